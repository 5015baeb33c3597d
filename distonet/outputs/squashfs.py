"""squashfs: the sealed root as one compressed, read-only file (zstd), the lower layer for a RAM
or stick root: an initrd copies or mounts it and puts a writable layer over it
(hooks/initramfs/union). Owners, modes, links and extended attributes are kept."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..fsutil import atomic_path
from ..manifest import Artifact
from ..reproducible import epoch_env
from .base import Options, Output, OutputContext


class SquashfsOptions(Options):
    compression: Literal["zstd", "xz", "gzip", "lz4"] = "zstd"
    # 3, not 15: on minimal's tree level 15 took 10.1 s for 198 MiB, level 3 1.4 s for 202 MiB
    # (most of an image is already compressed: modules, documentation).
    level: int = Field(3, ge=1, le=22, description="zstd level (xz and gzip use their own defaults)")
    block_kib: Literal[128, 256, 512, 1024] = 1024


def mksquashfs_argv(tree, dest, o: SquashfsOptions) -> list[str]:
    argv = ["mksquashfs", str(tree), str(dest), "-noappend", "-no-progress", "-quiet", "-xattrs",
            "-comp", o.compression, "-b", f"{o.block_kib}K", "-one-file-system"]
    if o.compression == "zstd":
        argv += ["-Xcompression-level", str(o.level)]
    return argv


class Squashfs(Output):
    name = "squashfs"
    Options = SquashfsOptions
    needs_tree = True
    tools = ("mksquashfs",)
    version = 2     # 2: reproducible (reproducible.py)

    @classmethod
    def files(cls, options) -> list[str]:
        return ["root.squashfs"]

    @classmethod
    def make(cls, ctx: OutputContext) -> list[Artifact]:
        final = ctx.out / "root.squashfs"
        with atomic_path(final) as tmp:
            # SOURCE_DATE_EPOCH: mksquashfs dates the file system and every inode with it
            ctx.runner(mksquashfs_argv(ctx.tree, tmp, ctx.options), env=epoch_env(ctx.build.epoch))
        return [Artifact.of("squashfs", final, ctx.out, format=f"squashfs+{ctx.options.compression}")]
