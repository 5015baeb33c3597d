"""The snapshot store: partial → commit → stamp, and prune/clean that never remove what another
process uses (a real second process holds the locks)."""

import os
import subprocess
import sys
import time

from distonet.store import StageStore

K1, K2, K3 = "a" * 64, "b" * 64, "c" * 64

HOLDER = """
import sys, time
from distonet.store import StageStore
StageStore(sys.argv[1]).hold(sys.argv[2:])
print("held", flush=True)
time.sleep(60)
"""


def make(store: StageStore, key: str) -> None:
    partial = store.begin(key)
    (partial / "tree").mkdir()
    (partial / "tree" / "f").write_text("x" * 10000)
    store.commit(key, partial, {"key": key})


def test_commit_renames_then_stamps(tmp_path):
    store = StageStore(tmp_path)
    partial = store.begin(K1)
    assert partial.name == f"{K1[:32]}.partial-{os.getpid()}" and not store.done(K1)
    (partial / "tree").mkdir()
    (partial / "work").mkdir()
    store.commit(K1, partial, {"key": K1})
    assert store.done(K1) and store.read_stamp(K1) == {"key": K1}
    assert not partial.exists() and not (store.dir(K1) / "work").exists()


def test_begin_clears_a_dead_builders_partial(tmp_path):
    store = StageStore(tmp_path)
    (tmp_path / f"{K1[:32]}.partial-999999").mkdir(parents=True)
    with store.building(K1, "x"):
        store.begin(K1)
    assert [p.name for p in tmp_path.glob("*.partial-*")] == [f"{K1[:32]}.partial-{os.getpid()}"]


def test_gc_removes_unused_keeps_wanted_and_skips_what_another_process_holds(tmp_path):
    store = StageStore(tmp_path)
    for k in (K1, K2, K3):
        make(store, k)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), K2], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        dry, busy = store.gc(keep={K1}, dry_run=True)
        assert [r.path.name for r in dry] == [K3[:32]] and dry[0].bytes >= 10000
        assert store.done(K3)  # a dry run removes nothing
        removed, busy = store.gc(keep={K1})
        assert [r.path.name for r in removed] == [K3[:32]]
        assert [b.name for b in busy] == [K2[:32]]  # a running build holds it
        assert store.done(K1) and store.done(K2) and not store.dir(K3).exists()
    finally:
        holder.kill()
        holder.wait()
    removed, busy = store.gc(keep={K1})
    assert [r.path.name for r in removed] == [K2[:32]] and busy == []


def test_gc_leaves_a_partial_that_is_being_built(tmp_path):
    store = StageStore(tmp_path)
    builder = subprocess.Popen([sys.executable, "-c", f"""
import time
from distonet.store import StageStore
s = StageStore({str(tmp_path)!r})
s.hold([{K1!r}])
with s.building({K1!r}, "x"):
    s.begin({K1!r})
    print("building", flush=True)
    time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert builder.stdout.readline().strip() == "building"
        removed, busy = store.gc(keep=set())
        assert removed == [] and [b.name for b in busy] == [f"{K1[:32]}.partial-{builder.pid}"]
    finally:
        builder.kill()
        builder.wait()
    removed, _ = store.gc(keep=set())
    assert [r.path.name for r in removed] == [f"{K1[:32]}.partial-{builder.pid}"]


def test_a_second_builder_waits_and_says_so(tmp_path, capfd):
    store = StageStore(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", f"""
import time
from distonet.store import StageStore
with StageStore({str(tmp_path)!r}).building({K1!r}, "x"):
    print("locked", flush=True)
    time.sleep(1.5)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        with store.building(K1, "packages.x"):
            waited = time.monotonic() - start
        assert waited > 0.5
        assert "waiting: stage packages.x" in capfd.readouterr().err
    finally:
        holder.wait()


def test_dead_partials_of_any_key_go_and_a_live_builders_stays(tmp_path):
    store = StageStore(tmp_path)
    (tmp_path / f"{K2[:32]}.partial-424242").mkdir(parents=True)  # a killed build's, another key
    with store.building(K1, "x"):
        mine = store.begin(K1)
        assert store.clear_dead_partials() == [tmp_path / f"{K2[:32]}.partial-424242"]
        assert mine.exists()
