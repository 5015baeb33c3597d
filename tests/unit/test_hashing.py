"""Artifact digests: sparse files hashed without reading their holes, and hashes left for later
(a thread) giving the same artifacts as hashing at once."""

import hashlib
import os

from distonet.fsutil import sha256_file
from distonet.manifest import Artifact, hashes_later, with_hashes


def plain(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_sparse_files_hash_as_the_zeros_they_read_as(tmp_path):
    img = tmp_path / "sparse.img"
    with open(img, "wb") as f:
        f.truncate(50 << 20)
        f.seek(3 << 20)
        f.write(b"x" * 12345)
        f.seek(30 << 20)
        f.write(os.urandom(5 << 20))
    holes = tmp_path / "holes"
    with open(holes, "wb") as f:
        f.truncate(9 << 20)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    small = tmp_path / "small"
    small.write_bytes(b"hello")
    for p in (img, holes, empty, small):
        assert sha256_file(p) == plain(p), p
    seen = []
    sha256_file(img, bufsize=1 << 20, progress=seen.append)
    assert seen[-1] == 50 << 20 and seen == sorted(seen)


def test_hashes_later_gives_the_artifacts_hashing_at_once_gives(tmp_path):
    (tmp_path / "a.img").write_bytes(b"a" * 1000)
    (tmp_path / "b.img").write_bytes(b"b" * 10)
    at_once = [Artifact.of("rootfs", tmp_path / "a.img", tmp_path), Artifact.of("disk", tmp_path / "b.img", tmp_path)]
    with hashes_later() as unhashed:
        later = [Artifact.of("rootfs", tmp_path / "a.img", tmp_path), Artifact.of("disk", tmp_path / "b.img", tmp_path)]
    assert [a.sha256 for a in later] == ["", ""] and len(unhashed) == 2
    assert with_hashes(later, unhashed) == at_once
    with hashes_later(False) as none:
        assert Artifact.of("disk", tmp_path / "b.img", tmp_path) == at_once[1] and none == []
    assert Artifact.of("disk", tmp_path / "b.img", tmp_path).sha256 == plain(tmp_path / "b.img")


def test_a_sparse_file_copied_into_another_keeps_its_holes(tmp_path):
    """copy_into writes the data of a sparse image at an offset of a sparse disk: the bytes
    are the image's, and its holes take no blocks in the disk."""
    from distonet.fsutil import copy_into
    src, dest = tmp_path / "root.img", tmp_path / "disk.raw"
    with open(src, "wb") as fh:
        fh.truncate(64 << 20)
        fh.write(b"head" * 1024)
        fh.seek(40 << 20)
        fh.write(b"tail" * 4096)
    with open(dest, "wb") as fh:
        fh.truncate(80 << 20)
    copy_into(src, dest, 8 << 20)
    data = dest.read_bytes()
    assert data[8 << 20: 72 << 20] == src.read_bytes() and data[:8 << 20] == bytes(8 << 20)
    assert dest.stat().st_blocks * 512 < 1 << 20                  # 20 KiB of data, not 64 MiB
