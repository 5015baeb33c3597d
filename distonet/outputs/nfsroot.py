"""nfsroot: the sealed tree as a tarball to unpack on the NFS server (owners by number, modes,
links, extended attributes and ACLs kept), kernel and initrd beside it in the kernel output."""

from __future__ import annotations

from ..fsutil import atomic_path
from ..manifest import Artifact
from .base import Output, OutputContext


def tar_argv(tree, dest) -> list[str]:
    # --numeric-owner: the server has its own users; the image's numbers are what the nodes see.
    return ["tar", "--create", "--file", str(dest), "--directory", str(tree), "--numeric-owner",
            "--xattrs", "--xattrs-include=*", "--acls", "--sparse", "--one-file-system",
            "--sort=name", "--use-compress-program=zstd -T0 -6", "."]


class NfsRoot(Output):
    name = "nfsroot"
    needs_tree = True
    tools = ("tar", "zstd")

    @classmethod
    def files(cls, options) -> list[str]:
        return ["nfsroot.tar.zst"]

    @classmethod
    def make(cls, ctx: OutputContext) -> list[Artifact]:
        final = ctx.out / "nfsroot.tar.zst"
        with atomic_path(final) as tmp:
            ctx.runner(tar_argv(ctx.tree, tmp))
        return [Artifact.of("nfsroot", final, ctx.out, format="tar+zstd")]
