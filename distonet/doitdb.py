"""doit's dependency store, as doit's own sqlite3 backend but in WAL mode with
synchronous=NORMAL: a commit appends to the log without waiting for the disk (the default
rollback journal costs three fsyncs, most of a no-op rebuild's 70 ms at its end). A power cut
can lose only the last commit, never corrupt the file; the stage store and the manifests are
the truth anyway, so doit then reruns a task that finds its stage or output already made."""

from __future__ import annotations

from doit.dependency import SqliteDB

NAME = "sqlite3-wal"
PLUGIN = {"BACKEND": {NAME: f"{__name__}:SqliteWAL"}}


class SqliteWAL(SqliteDB):
    desc = "sqlite3 in WAL mode (distonet)"

    def _sqlite3(self, name):
        conn = super()._sqlite3(name)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def dump(self):
        """doit saves every task it ran, and a task without actions (`build:minimal`) runs in
        every build, no-op included, with the same data each time. Unchanged entries are not
        written: a run that changed nothing leaves the log empty, and closing then syncs
        nothing (a checkpoint costs four fdatasyncs, each of which can wait for the writeback
        of a build's images)."""
        for task_id in list(self._dirty):
            row = self._conn.execute("select task_data from doit where task_id=?", (task_id,)).fetchone()
            if row is not None and self.codec.encode(row["task_data"]) == self.codec.encode(self._cache[task_id]):
                self._dirty.discard(task_id)
        super().dump()
