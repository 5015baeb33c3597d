"""doit's dependency store: doit's own sqlite3 backend with a truncated rollback journal and
synchronous=NORMAL, and no write of entries that did not change.

doit opens the store once, commits once at the end and closes. For that pattern the rollback
journal is the cheaper one (strace): a run that writes costs three fdatasyncs, where WAL mode's
commit and closing checkpoint cost four; a run that only reads creates no file, where WAL mode
creates its `-wal` and `-shm` files at open and deletes them at close, metadata changes that
wait on a busy file system's journal. TRUNCATE keeps the journal file, so a commit does not
change the directory either. A power cut can lose the last commit; the stage store and the
manifests are the truth anyway, so doit then reruns a task that finds its work already made."""

from __future__ import annotations

import sqlite3

from doit.dependency import SqliteDB

NAME = "sqlite3-distonet"
PLUGIN = {"BACKEND": {NAME: f"{__name__}:SqliteStore"}}


class SqliteStore(SqliteDB):
    desc = "sqlite3, truncated rollback journal, unchanged entries not written (distonet)"

    def _sqlite3(self, name):
        conn = super()._sqlite3(name)
        try:
            # a store left in WAL mode by an older distonet goes back to a rollback journal;
            # while another build holds it open that cannot happen, and this run keeps WAL
            conn.execute("PRAGMA journal_mode=TRUNCATE")
        except sqlite3.OperationalError:
            pass
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def dump(self):
        """doit saves every task it ran, and a task without actions (`build:minimal`) runs in
        every build, no-op included, with the same data each time. Unchanged entries are not
        written: a run that changed nothing commits nothing, and syncs nothing (a sync can wait
        for the writeback of a build's images)."""
        for task_id in list(self._dirty):
            row = self._conn.execute("select task_data from doit where task_id=?", (task_id,)).fetchone()
            if row is not None and self.codec.encode(row["task_data"]) == self.codec.encode(self._cache[task_id]):
                self._dirty.discard(task_id)
        super().dump()
