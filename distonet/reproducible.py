"""What makes two builds of one recipe against one archive state give the same bytes.

The build's time is SOURCE_DATE_EPOCH: the newest `Date:` of the suites' InRelease files, so
a function of the archive state the stage keys already name (host/apt.py). It reaches the
package stages' commands (initramfs-tools clamps the initrd's mtimes and sorts its cpio when
it is set), mkfs.fat and mtools (the ESP), and the ext4 images:

mkfs.ext4 -d (e2fsprogs 1.47.0, Debian 12) takes the file system's UUID and directory hash
seed from the recipe (-U, -E hash_seed) and its own clock from E2FSPROGS_FAKE_TIME, but copies
each inode's ctime and atime from the tree it reads: the time our copy of the tree was made.
1.47.1 clamps these itself; until the build host has it, debugfs sets them afterwards (and
clamps any mtime newer than the epoch), one `set_inode_field` per path, and the superblock's
last write time (which 1.47.0 takes from the clock) is written here, its CRC32C made again.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import BuildError
from .host.run import Runner


def epoch_env(epoch: int) -> dict[str, str]:
    return {"SOURCE_DATE_EPOCH": str(epoch)} if epoch else {}


def mkfs_env(epoch: int) -> dict[str, str]:
    return {**epoch_env(epoch), **({"E2FSPROGS_FAKE_TIME": str(epoch)} if epoch else {})}


def ext4_clamp_script(tree: Path, epoch: int) -> tuple[str, int]:
    """debugfs commands giving every inode made from `tree` the epoch as ctime and atime, and
    as mtime where the file is newer; and how many paths debugfs cannot name (a `"` or a newline
    in the name: left as they are)."""
    lines, skipped = [], 0
    t = f"@{epoch}"
    for directory, dirs, files in os.walk(tree):
        rel_dir = os.path.relpath(directory, tree)
        for name in [*(["."] if rel_dir == "." else []), *dirs, *files]:
            rel = "/" if name == "." else "/" + os.path.normpath(os.path.join(rel_dir, name))
            if '"' in rel or "\n" in rel:
                skipped += 1
                continue
            lines.append(f'sif "{rel}" ctime {t}\nsif "{rel}" atime {t}\n')
            if os.lstat(os.path.join(directory, name) if name != "." else directory).st_mtime > epoch:
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
    E2FSPROGS_FAKE_TIME says; its checksum made again. False (nothing written) unless the
    superblock is one we understand: ext4's magic and a checksum we can reproduce."""
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
        if metadata_csum:
            struct.pack_into("<I", sb, 0x3FC, _crc32c_raw(bytes(sb[:0x3FC])))
        fh.seek(1024)
        fh.write(sb)
    return True


def clamp_ext4(image: Path, tree: Path, epoch: int, work: Path, runner: Runner) -> None:
    """After `mkfs.ext4 -d tree image`: the times of every inode from the epoch (see above)."""
    if not epoch:
        return
    script, skipped = ext4_clamp_script(tree, epoch)
    with tempfile.NamedTemporaryFile("w", prefix="clamp-", suffix=".debugfs", dir=work) as f:
        f.write(script)
        f.flush()
        # (its clock too: it stamps the superblock's last write time)
        runner(["debugfs", "-w", "-f", f.name, str(image)], capture=True, env=mkfs_env(epoch))
    if not set_ext4_write_time(image, epoch):
        raise BuildError(f"{image}: not an ext4 superblock distonet can stamp with the build's time")
    if skipped:
        from . import log
        log.info(f"{image.name}: {skipped} path(s) with a quote or newline keep their build-time ctime")
