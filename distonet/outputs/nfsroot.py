"""nfsroot: the sealed tree as a tarball to unpack on the NFS server (owners by number, modes,
links, extended attributes and ACLs kept), kernel and initrd beside it in the kernel output."""

from __future__ import annotations

from pydantic import Field

from ..fsutil import atomic_path
from ..manifest import Artifact
from .base import Options, Output, OutputContext


class NfsRootOptions(Options):
    # 3, not 6: on minimal's 332 MiB tar level 6 took 2.6 s (4.9 s of CPU, both cores) for
    # 195 MiB, level 3 1.0 s (1.5 s) for 199 MiB; most of an image is already compressed
    level: int = Field(3, ge=1, le=19, description="zstd level of nfsroot.tar.zst")


def tar_argv(tree, dest, epoch: int = 0, level: int = 3) -> list[str]:
    # --numeric-owner: the server has its own users; the image's numbers are what the nodes see.
    # Reproducible: members sorted, mtimes clamped to the build's epoch, no atime or ctime, and
    # pax header names without tar's pid (reproducible-builds.org's archive recipe).
    clamp = [f"--mtime=@{epoch}", "--clamp-mtime"] if epoch else []
    return ["tar", "--create", "--file", str(dest), "--directory", str(tree), "--numeric-owner",
            "--xattrs", "--xattrs-include=*", "--acls", "--sparse", "--one-file-system",
            "--sort=name", *clamp, "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
            f"--use-compress-program=zstd -T0 -{level}", "."]


class NfsRoot(Output):
    name = "nfsroot"
    Options = NfsRootOptions
    needs_tree = True
    tools = ("tar", "zstd")
    version = 3     # 2: reproducible (reproducible.py); 3: zstd level 3 by default, not 6

    @classmethod
    def files(cls, options) -> list[str]:
        return ["nfsroot.tar.zst"]

    @classmethod
    def make(cls, ctx: OutputContext) -> list[Artifact]:
        final = ctx.out / "nfsroot.tar.zst"
        with atomic_path(final) as tmp:
            ctx.runner(tar_argv(ctx.tree, tmp, ctx.build.epoch, ctx.options.level))
        return [Artifact.of("nfsroot", final, ctx.out, format="tar+zstd")]
