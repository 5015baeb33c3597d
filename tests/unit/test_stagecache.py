"""The shared stage cache (a directory backend, real tar and zstd): an entry keeps what an
overlayfs upper layer needs, appears whole or not at all, and a truncated or tampered entry is
refused so the stage is built instead."""

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from distonet.errors import BuildError, DistonetError
from distonet.stagecache import DirCache, cache_for, try_pull

KEY = "ab" * 32


def layer(root: Path) -> Path:
    """An overlayfs upper dir in miniature: a whiteout, an opaque directory, owners, modes, links."""
    tree = root / "tree"
    (tree / "etc/opaque").mkdir(parents=True)
    (tree / "etc/file").write_text("content\n")
    os.chown(tree / "etc/file", 1234, 5678)
    os.chmod(tree / "etc/file", 0o4750)
    os.mknod(tree / "etc/gone", stat.S_IFCHR | 0o600, os.makedev(0, 0))          # a whiteout
    os.setxattr(tree / "etc/opaque", "trusted.overlay.opaque", b"y")             # an opaque dir
    os.symlink("file", tree / "etc/link")
    os.link(tree / "etc/file", tree / "etc/hard")
    return tree


def test_an_entry_keeps_what_an_overlay_layer_needs(tmp_path):
    tree = layer(tmp_path)
    cache = DirCache(tmp_path / "cache")
    assert not cache.has(KEY)
    size = cache.push(KEY, tree, {"stage": "packages.base", "key": KEY})
    assert size > 0 and cache.has(KEY) and cache.push(KEY, tree, {}) == 0      # pushed once
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted([f"{KEY}.json", cache.record(KEY)["file"]])
    out = tmp_path / "partial"
    out.mkdir()
    pulled = try_pull(cache, KEY, out, "packages.base")
    assert pulled["stage"] == "packages.base" and pulled["pulled_bytes"] == size
    got = out / "tree/etc"
    st = (got / "file").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o4750)
    gone = (got / "gone").stat()
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == os.makedev(0, 0)
    assert os.getxattr(got / "opaque", "trusted.overlay.opaque") == b"y"
    assert os.readlink(got / "link") == "file" and (got / "hard").stat().st_ino == st.st_ino


@pytest.mark.parametrize("damage", ["truncate", "tamper", "no-tarball"])
def test_a_damaged_entry_is_refused_and_the_stage_built(tmp_path, damage):
    tree = layer(tmp_path)
    cache = DirCache(tmp_path / "cache")
    cache.push(KEY, tree, {"stage": "s"})
    tarball = tmp_path / "cache" / cache.record(KEY)["file"]
    data = tarball.read_bytes()
    if damage == "truncate":
        tarball.write_bytes(data[: len(data) // 2])
    elif damage == "tamper":
        tarball.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    else:
        tarball.unlink()
    with pytest.raises(BuildError, match="does not match its record|truncated or tampered"):
        cache.pull(KEY, tmp_path / "x" / "tree")
    out = tmp_path / "partial"
    out.mkdir()
    assert try_pull(cache, KEY, out, "s") is None and list(out.iterdir()) == []   # built instead


def test_a_half_pushed_entry_does_not_count(tmp_path):
    cache = DirCache(tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / f"{KEY}.tar.zst").write_bytes(b"partial")   # the record never written
    assert not cache.has(KEY)


def test_a_killed_pusher_s_litter_is_swept_by_the_next_push(tmp_path):
    """Temporary files of this host's dead pushers go at once; another host's, and a tarball no
    record names (killed between rename and record), once older than any push takes."""
    root = tmp_path / "cache"
    cache = DirCache(root)
    cache.push(KEY, layer(tmp_path / "a"), {"stage": "s"})
    gone = subprocess.Popen(["true"])
    gone.wait()
    other = "b" * len(KEY)
    litter = {
        f".{other}.tar.zst.{cache._me}.{gone.pid}": True,           # this host, its process gone
        f".{other}.json.{cache._me}.{gone.pid}": True,
        f".{other}.tar.zst.{cache._me}.{os.getpid()}": False,       # this host, still pushing
        f".{other}.tar.zst.elsewhere.{gone.pid}": False,            # another host's: not ours to judge
        f"{other}.0123456789abcdef.tar.zst": False,                 # a fresh orphan: maybe just renamed
    }
    for name in litter:
        (root / name).write_bytes(b"partial")
    assert {p.name for p in cache.sweep()} == {n for n, dead in litter.items() if dead}
    old = cache.sweep(now=time.time() + DirCache.STALE + 60)
    assert {p.name for p in old} == {n for n, dead in litter.items() if not dead}
    assert sorted(p.name for p in root.iterdir()) == sorted([f"{KEY}.json", cache.record(KEY)["file"]])


def _push(root: str, tree: str, barrier) -> None:
    barrier.wait()
    DirCache(Path(root)).push(KEY, Path(tree), {"stage": "s", "by": tree})


def test_two_builders_pushing_one_key_at_once_leave_one_whole_entry(tmp_path):
    """Two builders built the same stage apart (other mtimes: other bytes) and push at once,
    again and again: each time one record stands, names a tarball that matches it, and the
    other builder's tarball is gone."""
    import multiprocessing
    trees = []
    for name in ("a", "b"):
        tree = layer(tmp_path / name)
        os.utime(tree / "etc/file", (1000 + len(trees), 1000 + len(trees)))
        trees.append(str(tree))
    ctx = multiprocessing.get_context("fork")
    for round_ in range(6):
        root = tmp_path / f"cache{round_}"
        barrier = ctx.Barrier(2)
        builders = [ctx.Process(target=_push, args=(str(root), t, barrier)) for t in trees]
        for b in builders:
            b.start()
        for b in builders:
            b.join(60)
        assert [b.exitcode for b in builders] == [0, 0]
        record = DirCache(root).record(KEY)
        assert sorted(p.name for p in root.iterdir()) == sorted([f"{KEY}.json", record["file"]])
        stamp, _ = DirCache(root).pull(KEY, tmp_path / f"out{round_}" / "tree")
        assert stamp["by"] in trees and (tmp_path / f"out{round_}/tree/etc/file").read_text() == "content\n"


def test_cache_specs():
    assert isinstance(cache_for("/mnt/cache"), DirCache) and cache_for(None) is None
    assert str(cache_for("oci+http://127.0.0.1:5000/lab")) == "oci+http://127.0.0.1:5000/lab/stages"
    with pytest.raises(DistonetError, match="neither a directory nor an OCI registry"):
        cache_for("cache")
