"""rootfs.img: an LVM-ready raw ext4 image, a whole number of extents, built from the tree
with `mkfs.ext4 -d` (no loop device, no mount)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from .. import log
from ..errors import CommandError
from ..fsutil import atomic_path
from ..layout import MIB, rootfs_size, round_up
from ..manifest import Artifact
from ..reproducible import NO_FSYNC, clamp_ext4, mkfs_env
from ..tree import tree_usage
from .base import Options, Output, OutputContext

MAX_MIB = 16 << 20  # 16 TiB: beyond that a typo, not an image


class RootfsOptions(Options):
    extent_mib: int = Field(4, gt=0, le=1024, description="LVM extent size; the image is a multiple of it")
    free_mib: int = Field(256, ge=0, le=MAX_MIB, description="free space left in the filesystem")
    label: str = Field("root", min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_.-]+$",
                       description="ext4 volume label (at most 16 bytes)")


def mkfs_argv(image: Path, tree: Path, uuid: str, label: str, size: int) -> list[str]:
    # hash_seed fixed and the UUID from the plan: the same tree gives the same filesystem layout.
    return ["mkfs.ext4", "-q", "-F", "-t", "ext4", "-m", "0", "-L", label, "-U", uuid,
            "-E", f"root_owner=0:0,hash_seed={uuid}", "-d", str(tree), str(image), f"{size // 1024}k"]


def _out_of_room(exc: CommandError) -> bool:
    text = str(exc).lower()
    return "could not allocate" in text or "no space" in text or "not enough space" in text \
        or "inode" in text and "allocat" in text


class Rootfs(Output):
    name = "rootfs"
    Options = RootfsOptions
    needs_tree = True
    tools = ("mkfs.ext4", "debugfs", "dumpe2fs", "eatmydata")
    version = 3     # 2: inode times from the build's epoch (reproducible.py); 3: no lifetime writes

    @classmethod
    def files(cls, options) -> list[str]:
        return ["rootfs.img"]

    @classmethod
    def make(cls, ctx: OutputContext) -> list[Artifact]:
        opts = ctx.options
        image = ctx.out / "rootfs.img"
        used, inodes, newer = tree_usage(ctx.tree, ctx.build.epoch or None)
        size = rootfs_size(used, inodes, opts.free_mib, opts.extent_mib)
        with atomic_path(image) as tmp:
            for attempt in range(3):
                tmp.unlink(missing_ok=True)
                try:
                    ctx.runner([*NO_FSYNC, *mkfs_argv(tmp, ctx.tree, ctx.build.root_uuid, opts.label, size)], capture=True,
                               env=mkfs_env(ctx.build.epoch))
                    break
                except CommandError as exc:
                    # Only a filesystem too small for the tree is worth a larger try.
                    if attempt == 2 or not _out_of_room(exc):
                        raise
                    size = round_up(size + max(size // 4, opts.extent_mib * MIB), opts.extent_mib * MIB)
                    log.info(f"rootfs: filesystem too small, retrying with {size // MIB} MiB")
            clamp_ext4(tmp, ctx.tree, ctx.build.epoch, ctx.work, ctx.runner, newer)
        return [Artifact.of("rootfs", image, ctx.out, format="ext4")]
