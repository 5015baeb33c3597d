"""A stage is made in a tmpfs and copied into the store whole (real mounts, real cp), while the
build goes on; one that outgrows the tmpfs is made again on disk; DISTONET_SCRATCH=disk makes it
on disk at once."""

import contextlib
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from distonet import actions
from distonet.errors import BuildError
from distonet.host import scratch
from distonet.host.ledger import Ledger, mount_points
from distonet.host.run import run
from distonet.store import StageStore, finish_copies

TMPFS_MAGIC = 0x01021994


def fs_type(path: Path) -> int:
    import ctypes

    class StatFs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 120)]
    buf = StatFs()
    assert ctypes.CDLL(None, use_errno=True).statfs(str(path).encode(), ctypes.byref(buf)) == 0
    return buf.f_type


class Fake:
    """A stage kind whose make writes what a layer holds: hard links, a symlink, an overlayfs
    whiteout and an opaque directory (xattr), and records where it wrote."""
    calls: list = []
    fail_with = None
    big = 0

    @classmethod
    def make(cls, ctx):
        cls.calls.append((ctx.partial, fs_type(ctx.partial)))
        tree = ctx.partial / "tree"
        tree.mkdir()
        (tree / "etc").mkdir()
        (tree / "etc/motd").write_text("hello\n")
        os.chmod(tree / "etc/motd", 0o640)
        os.link(tree / "etc/motd", tree / "etc/motd.link")
        (tree / "etc/issue").symlink_to("motd")
        os.mknod(tree / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))
        (tree / "opaque").mkdir()
        os.setxattr(tree / "opaque", "trusted.overlay.opaque", b"y")
        (ctx.partial / "work").mkdir()
        if cls.big:
            (tree / "big").write_bytes(b"x" * cls.big)
        if cls.fail_with:
            raise cls.fail_with
        return {"made": True}


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setitem(actions.STAGES, "fake", Fake)
    Fake.calls, Fake.fail_with, Fake.big = [], None, 0
    paths = SimpleNamespace(ledger=tmp_path / "ledger", work=tmp_path / "work")
    plan = SimpleNamespace(paths=paths)
    stage = SimpleNamespace(key="f" * 64, kind="fake", name="fake")
    partial = tmp_path / "store" / "partial"
    partial.mkdir(parents=True)
    ctx = SimpleNamespace(partial=partial, ledger=None)
    yield plan, stage, ctx, partial, tmp_path
    assert not [m for m in mount_points() if m.startswith(str(tmp_path))]
    assert not list((tmp_path / "work").glob("scratch-*"))


def make(setup, holder=None):
    plan, stage, ctx, partial, tmp = setup
    holder = holder or Ledger(tmp / "ledger", run)
    try:
        extra, where = actions._make(plan, stage, ctx, holder, run)
        if where is not None:
            scratch.keep(where, partial, run)
        return extra, where
    finally:
        holder.close()


def test_a_stage_is_made_in_memory_and_copied_whole(setup):
    plan, stage, ctx, partial, _ = setup
    extra, where = make(setup)
    assert extra == {"made": True} and where is not None
    assert len(Fake.calls) == 1 and Fake.calls[0] == (where, TMPFS_MAGIC) and ctx.partial == partial
    tree = partial / "tree"
    assert (tree / "etc/motd").read_text() == "hello\n"
    assert stat.S_IMODE((tree / "etc/motd").stat().st_mode) == 0o640
    assert (tree / "etc/motd").stat().st_ino == (tree / "etc/motd.link").stat().st_ino
    assert os.readlink(tree / "etc/issue") == "motd"
    gone = (tree / "gone").lstat()
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == os.makedev(0, 0)
    assert os.getxattr(tree / "opaque", "trusted.overlay.opaque") == b"y"
    assert not (partial / "work").exists()      # overlayfs' work dir is not content


def test_a_stage_that_outgrows_its_tmpfs_is_made_again_on_disk(setup, monkeypatch):
    plan, stage, ctx, partial, _ = setup
    monkeypatch.setattr(scratch, "MIN_BYTES", 1 << 20)
    monkeypatch.setattr(scratch, "available_bytes", lambda: 4 << 20)   # a 2 MiB tmpfs
    Fake.big = 3 << 20
    assert make(setup) == ({"made": True}, None)
    assert [c[1] for c in Fake.calls] == [TMPFS_MAGIC, fs_type(partial)] and Fake.calls[1][0] == partial
    assert (partial / "tree/big").stat().st_size == 3 << 20


def test_a_failure_with_room_left_is_not_made_again(setup):
    Fake.fail_with = BuildError("apt failed")
    with pytest.raises(BuildError, match="apt failed"):
        make(setup)
    assert len(Fake.calls) == 1


def test_DISTONET_SCRATCH_disk_makes_the_stage_on_disk(setup, monkeypatch):
    plan, stage, ctx, partial, _ = setup
    monkeypatch.setenv("DISTONET_SCRATCH", "disk")
    assert make(setup) == ({"made": True}, None)
    assert Fake.calls == [(partial, fs_type(partial))] and fs_type(partial) != TMPFS_MAGIC
    assert (partial / "tree/etc/motd").is_file()


def copy_behind(setup, argv=None):
    """What _run_stage does with a stage made in memory: the copy runs while the build goes on."""
    plan, stage, ctx, _, tmp = setup
    store = StageStore(tmp / "stages")
    ctx.partial = partial = store.begin(stage.key)
    holder = Ledger(tmp / "ledger", run)
    extra, where = actions._make(plan, stage, ctx, holder, run)
    held = contextlib.ExitStack()
    held.callback(holder.close)
    copy = holder.spawn(argv or scratch.keep_argv(where, partial))
    pushed = []
    store.commit_later(stage.key, where / "tree", partial, {"key": stage.key, **extra}, copy, held, pushed.append)
    return store, where, pushed


def test_a_stage_copied_behind_is_read_from_memory_then_committed(setup):
    _, stage, _, _, _ = setup
    store, where, pushed = copy_behind(setup)
    assert store.done(stage.key) and store.tree(stage.key) == where / "tree"
    assert store.read_stamp(stage.key) == {"key": stage.key, "made": True}
    finish_copies()
    assert store.stamp_path(stage.key).is_file() and store.tree(stage.key) == store.dir(stage.key) / "tree"
    assert (store.tree(stage.key) / "etc/motd").read_text() == "hello\n"
    assert str(where) not in mount_points() and not where.exists()
    assert pushed == [{"key": stage.key, "made": True}]


def test_a_failed_copy_leaves_no_snapshot(setup):
    _, stage, _, _, _ = setup
    store, where, pushed = copy_behind(setup, ["false"])
    with pytest.raises(BuildError, match="copying stage"):
        finish_copies()
    assert not store.done(stage.key) and not store.dir(stage.key).exists() and pushed == []
    assert str(where) not in mount_points()


def test_layers_on_two_file_systems_read_as_one(tmp_path):
    """A stage in flight in its tmpfs under the store's layers on disk: every file of the stack
    reports the overlay's device (xino), so `mksquashfs -one-file-system` and `tar
    --one-file-system` keep them all (without it the squashfs of such a tree was empty)."""
    from distonet.host.chroot import mount_layers
    disk = tmp_path / "disk"
    disk.mkdir()
    (disk / "from-disk").write_text("d")
    with Ledger(tmp_path / "ledger", run) as ledger:
        memory = scratch.mount(ledger, tmp_path / "work", "e" * 64)
        (memory / "tree").mkdir()
        (memory / "tree/from-memory").write_text("m")
        merged = mount_layers(ledger, [memory / "tree", disk], tmp_path / "merged")
        devices = {os.lstat(merged / n).st_dev for n in (".", "from-disk", "from-memory")}
        assert len(devices) == 1
        inodes = {os.lstat(merged / n).st_ino for n in (".", "from-disk", "from-memory")}
        assert len(inodes) == 3
    assert not [m for m in mount_points() if m.startswith(str(tmp_path))]
