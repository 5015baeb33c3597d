"""doit's store as distonet opens it: a run that only reads writes nothing, and a store left in
WAL mode goes back to the rollback journal."""

import sqlite3
from contextlib import closing

from doit.dependency import JSONCodec

from distonet.doitdb import SqliteStore


def _store(path):
    return SqliteStore(str(path), codec=JSONCodec())


def _mode(path):
    """The journal mode the file keeps: "wal" is kept in the file, a rollback journal is set
    by each connection, and a new one says "delete"."""
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]


def test_a_run_that_changes_nothing_writes_nothing(tmp_path):
    db = tmp_path / "doit.db"
    s = _store(db)
    s.set("build:minimal", "checker:", "MD5Checker")
    s.dump()
    assert _mode(db) == "delete"
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in tmp_path.iterdir()}

    s = _store(db)                      # the next run: reads, sets the same values, dumps
    assert s.get("build:minimal", "checker:") == "MD5Checker"
    s.set("build:minimal", "checker:", "MD5Checker")
    s.dump()
    after = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in tmp_path.iterdir()}
    assert after == before              # no -wal, no -shm, no commit
    assert sorted(after) == ["doit.db", "doit.db-journal"]


def test_a_changed_entry_is_written(tmp_path):
    db = tmp_path / "doit.db"
    s = _store(db)
    s.set("rootfs:minimal", "deps:", [])
    s.dump()
    s = _store(db)
    s.set("rootfs:minimal", "deps:", ["a"])
    s.dump()
    assert _store(db).get("rootfs:minimal", "deps:") == ["a"]


def test_a_store_in_wal_mode_goes_back_to_the_rollback_journal(tmp_path):
    db = tmp_path / "doit.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("create table doit (task_id text not null primary key, task_data json)")
        conn.execute("""insert into doit values ('kernel:minimal', '{"deps:": []}')""")
        conn.commit()
    assert _mode(db) == "wal"
    s = _store(db)
    assert s.get("kernel:minimal", "deps:") == []
    s.dump()
    assert _mode(db) == "delete"
    assert not (tmp_path / "doit.db-wal").exists()
