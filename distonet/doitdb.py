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
