"""disk.qcow2: the KVM disk, converted from the disk output's raw image by qemu-img."""

from __future__ import annotations

from pydantic import Field

from ..fsutil import atomic_path
from ..manifest import Artifact
from .base import Options, Output, OutputContext


class Qcow2Options(Options):
    compress: bool = Field(False, description="zlib-compress clusters (smaller, slower to write)")


class Qcow2(Output):
    name = "qcow2"
    Options = Qcow2Options
    needs = ("disk",)
    tools = ("qemu-img",)

    @classmethod
    def files(cls, options) -> list[str]:
        return ["disk.qcow2"]

    @classmethod
    def make(cls, ctx: OutputContext) -> list[Artifact]:
        raw = ctx.input("disk", "disk")
        final = ctx.out / "disk.qcow2"
        progress = ["-p"] if _interactive() else []
        with atomic_path(final) as tmp:
            ctx.runner(["qemu-img", "convert", *progress, "-f", "raw", "-O", "qcow2",
                        *(["-c"] if ctx.options.compress else []), str(raw), str(tmp)])
        return [Artifact.of("qcow2", final, ctx.out, format="qcow2", virtual_size=raw.stat().st_size)]


def _interactive() -> bool:
    import sys
    from .. import log
    return sys.stderr.isatty() and log.level() >= log.NORMAL
