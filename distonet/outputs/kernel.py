"""vmlinuz and initrd.img, taken from the sealed tree for the netboot outputs."""

from __future__ import annotations

import shutil

from ..fsutil import atomic_path
from ..manifest import Artifact
from ..tree import find_kernel
from .base import Output, OutputContext


class Kernel(Output):
    name = "kernel"
    needs_tree = True

    @classmethod
    def files(cls, options) -> list[str]:
        return ["vmlinuz", "initrd.img"]

    @classmethod
    def make(cls, ctx: OutputContext) -> list[Artifact]:
        version, vmlinuz, initrd = find_kernel(ctx.tree)
        for src, name in ((vmlinuz, "vmlinuz"), (initrd, "initrd.img")):
            with atomic_path(ctx.out / name) as tmp:
                shutil.copyfile(src, tmp)
        return [Artifact.of("kernel", ctx.out / "vmlinuz", ctx.out, format="bzImage", version=version),
                Artifact.of("initrd", ctx.out / "initrd.img", ctx.out, format="initramfs", version=version)]
