"""What makes two builds of one recipe against one archive state give the same bytes.

The build's time is SOURCE_DATE_EPOCH: the newest `Date:` of the suites' InRelease files, so
a function of the archive state the stage keys already name (host/apt.py). It reaches the
package stages' commands (initramfs-tools clamps the initrd's mtimes and sorts its cpio when
it is set), mkfs.fat and mtools (the ESP), and the ext4 images:

mkfs.ext4 -d (e2fsprogs 1.47.0, Debian 12) takes the file system's UUID and directory hash
seed from the recipe (-U, -E hash_seed) and its own clock from E2FSPROGS_FAKE_TIME, but copies
each inode's ctime and atime from the tree it reads: the time our copy of the tree was made.
1.47.1 clamps these itself; until the build host has it, debugfs sets them afterwards (and
clamps any mtime newer than the epoch) by `set_inode_field`, and the superblock's
last write time (which 1.47.0 takes from the clock) is written here, its CRC32C made again.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from .errors import BuildError
from .host.run import Runner


# mkfs.ext4 and debugfs end with an fsync of the image: with the image's data still in the page
# cache, that is a wait for the disk (0.9 s of a 2.7 s mkfs of a 690 MiB root). No other
# artifact is synced either (what is promised is that a build's set of artifacts appears whole,
# by rename), so they run without it.
NO_FSYNC = ("eatmydata",)


def epoch_env(epoch: int) -> dict[str, str]:
    return {"SOURCE_DATE_EPOCH": str(epoch)} if epoch else {}


def mkfs_env(epoch: int) -> dict[str, str]:
    return {**epoch_env(epoch), **({"E2FSPROGS_FAKE_TIME": str(epoch)} if epoch else {})}


def used_inodes(dumpe2fs: str) -> list[int]:
    """The inodes in use, from `dumpe2fs`'s per-group free ranges: the root and every inode
    from the first ordinary one on (the journal and the like are mkfs's, dated by its clock)."""
    per_group = int(re.search(r"(?m)^Inodes per group:\s+(\d+)", dumpe2fs).group(1))
    found = re.search(r"(?m)^First inode:\s+(\d+)", dumpe2fs)
    first = int(found.group(1)) if found else 11
    used = [2]
    for group, free in re.findall(r"(?ms)^Group (\d+):.*?^  Free inodes: ([^\n]*)", dumpe2fs):
        low = int(group) * per_group + 1
        taken = set(range(low, low + per_group))
        for part in filter(None, (p.strip() for p in free.split(","))):
            a, _, b = part.partition("-")
            taken -= set(range(int(a), int(b or a) + 1))
        used += sorted(i for i in taken if i >= first)
    return used


def ext4_clamp_script(tree: Path, epoch: int, inodes: list[int], newer: list[str] | None = None) -> tuple[str, int]:
    """debugfs commands giving every inode in use the epoch as ctime and atime (by number: a
    tenth of the time of a path lookup each), and as mtime where the file in `tree` is newer
    (by path: few are; `newer` when the caller's walk found them already); and how many of
    those paths debugfs cannot name (a `"` or a newline in the name: their mtime is left as
    it is)."""
    t = f"@{epoch}"
    lines = [f"sif <{i}> ctime {t}\nsif <{i}> atime {t}\n" for i in inodes]
    if newer is None:
        from .tree import tree_usage
        newer = tree_usage(tree, epoch)[2]
    skipped = 0
    for rel in newer:
        if '"' in rel or "\n" in rel:
            skipped += 1
            continue
        lines.append(f'sif "{rel}" mtime {t}\n')
    return "".join(lines), skipped


_CRC32C = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C.append(_c)


def _crc32c_raw(data: bytes, crc: int = 0xFFFFFFFF) -> int:
    """CRC32C without the final inversion, as ext4's metadata checksums use it."""
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def set_ext4_write_time(image: Path, epoch: int) -> bool:
    """The superblock's last write time, which e2fsprogs 1.47.0 takes from the clock whatever
    E2FSPROGS_FAKE_TIME says, and its lifetime writes (kbytes written: how much mkfs and
    debugfs wrote, which varied by a quarter between two builds of one tree), zeroed; its
    checksum made again. False (nothing written) unless the superblock is one we understand:
    ext4's magic and a checksum we can reproduce."""
    import struct
    with open(image, "r+b") as fh:
        fh.seek(1024)
        sb = bytearray(fh.read(1024))
        if len(sb) < 1024 or struct.unpack_from("<H", sb, 0x38)[0] != 0xEF53:
            return False
        metadata_csum = struct.unpack_from("<I", sb, 0x64)[0] & 0x400
        if metadata_csum and _crc32c_raw(bytes(sb[:0x3FC])) != struct.unpack_from("<I", sb, 0x3FC)[0]:
            return False
        struct.pack_into("<I", sb, 0x30, epoch & 0xFFFFFFFF)
        sb[0x274] = (epoch >> 32) & 0xFF
        struct.pack_into("<Q", sb, 0x178, 0)                      # s_kbytes_written
        if metadata_csum:
            struct.pack_into("<I", sb, 0x3FC, _crc32c_raw(bytes(sb[:0x3FC])))
        fh.seek(1024)
        fh.write(sb)
    return True


def clamp_ext4(image: Path, tree: Path, epoch: int, work: Path, runner: Runner,
               newer: list[str] | None = None) -> None:
    """After `mkfs.ext4 -d tree image`: the times of every inode from the epoch (see above)."""
    if not epoch:
        return
    inodes = used_inodes(runner([*NO_FSYNC, "dumpe2fs", str(image)], capture=True).stdout)  # it syncs too
    script, skipped = ext4_clamp_script(tree, epoch, inodes, newer)
    with tempfile.NamedTemporaryFile("w", prefix="clamp-", suffix=".debugfs", dir=work) as f:
        f.write(script)
        f.flush()
        # (its clock too: it stamps the superblock's last write time)
        runner([*NO_FSYNC, "debugfs", "-w", "-f", f.name, str(image)], capture=True, env=mkfs_env(epoch))
    if not set_ext4_write_time(image, epoch):
        raise BuildError(f"{image}: not an ext4 superblock distonet can stamp with the build's time")
    if skipped:
        from . import log
        log.info(f"{image.name}: {skipped} path(s) with a quote or newline keep their mtime")
