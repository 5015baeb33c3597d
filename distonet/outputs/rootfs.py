"""rootfs.img: an LVM-ready raw ext4 image, a whole number of extents, built from the tree
with `mkfs.ext4 -d` (no loop device, no mount)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from .. import log
from ..errors import CommandError
from ..layout import MIB, rootfs_size
from ..manifest import Artifact
from . import Options, Output


class RootfsOptions(Options):
    extent_mib: int = Field(4, gt=0, description="LVM extent size; the image is a multiple of it")
    free_mib: int = Field(256, ge=0, description="free space left in the filesystem")
    label: str = Field("root", max_length=16)


def tree_usage(tree: Path) -> tuple[int, int]:
    """(bytes allocated in 4 KiB blocks, inode count) of a tree, not crossing mounts."""
    used, inodes = 0, 0
    dev = tree.stat().st_dev
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames[:] = [d for d in dirnames if os.lstat(os.path.join(dirpath, d)).st_dev == dev]
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            used += -(-st.st_size // 4096) * 4096
            inodes += 1
    return used, inodes


def mkfs_argv(image: Path, tree: Path, uuid: str, label: str, size: int) -> list[str]:
    # hash_seed fixed and the UUID from the plan: the same tree gives the same filesystem layout.
    return ["mkfs.ext4", "-q", "-F", "-t", "ext4", "-m", "0", "-L", label, "-U", uuid,
            "-E", f"root_owner=0:0,hash_seed={uuid}", "-d", str(tree), str(image), f"{size // 1024}k"]


class Rootfs(Output):
    name = "rootfs"
    Options = RootfsOptions

    def files(self) -> list[str]:
        return ["rootfs.img"]

    def make(self, tree: Path, ledger, runner) -> list[Artifact]:
        out = self.plan.out_dir
        image = out / "rootfs.img"
        tmp = out / ".rootfs.img.tmp"
        used, inodes = tree_usage(tree)
        size = rootfs_size(used, inodes, self.options.free_mib, self.options.extent_mib)
        for attempt in range(3):
            tmp.unlink(missing_ok=True)
            try:
                runner(mkfs_argv(tmp, tree, self.plan.root_uuid, self.options.label, size))
                break
            except CommandError:
                if attempt == 2:
                    raise
                size += max(size // 4, self.options.extent_mib * MIB)
                size = -(-size // (self.options.extent_mib * MIB)) * self.options.extent_mib * MIB
                log.info(f"rootfs: filesystem too small, retrying with {size // MIB} MiB")
        os.replace(tmp, image)
        return [Artifact.of("rootfs", image, out)]
