"""nfsroot: the sealed tree as a tarball to unpack on the NFS server (owners by number, modes,
links, extended attributes and ACLs kept), kernel and initrd beside it in the kernel output."""

from __future__ import annotations

from ..fsutil import atomic_path
from ..manifest import Artifact
from .base import Output, OutputContext


def tar_argv(tree, dest, epoch: int = 0) -> list[str]:
    # --numeric-owner: the server has its own users; the image's numbers are what the nodes see.
    # Reproducible: members sorted, mtimes clamped to the build's epoch, no atime or ctime, and
    # pax header names without tar's pid (reproducible-builds.org's archive recipe).
    clamp = [f"--mtime=@{epoch}", "--clamp-mtime"] if epoch else []
    return ["tar", "--create", "--file", str(dest), "--directory", str(tree), "--numeric-owner",
            "--xattrs", "--xattrs-include=*", "--acls", "--sparse", "--one-file-system",
            "--sort=name", *clamp, "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
            "--use-compress-program=zstd -T0 -6", "."]


class NfsRoot(Output):
    name = "nfsroot"
    needs_tree = True
    tools = ("tar", "zstd")
    version = 2     # 2: reproducible (reproducible.py)

    @classmethod
    def files(cls, options) -> list[str]:
        return ["nfsroot.tar.zst"]

    @classmethod
    def make(cls, ctx: OutputContext) -> list[Artifact]:
        final = ctx.out / "nfsroot.tar.zst"
        with atomic_path(final) as tmp:
            ctx.runner(tar_argv(ctx.tree, tmp, ctx.build.epoch))
        return [Artifact.of("nfsroot", final, ctx.out, format="tar+zstd")]
