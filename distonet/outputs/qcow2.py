"""disk.qcow2: the KVM disk, converted from disk.raw by qemu-img."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from ..manifest import Artifact
from . import Options, Output


class Qcow2Options(Options):
    compress: bool = Field(False, description="zlib-compress clusters (smaller, slower to write)")


class Qcow2(Output):
    name = "qcow2"
    Options = Qcow2Options
    needs = ("disk",)

    def files(self) -> list[str]:
        return ["disk.qcow2"]

    def make(self, tree: Path, ledger, runner) -> list[Artifact]:
        out = self.plan.out_dir
        tmp, final = out / ".disk.qcow2.tmp", out / "disk.qcow2"
        tmp.unlink(missing_ok=True)
        runner(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", *(["-c"] if self.options.compress else []),
                str(out / "disk.raw"), str(tmp)])
        os.replace(tmp, final)
        return [Artifact.of("qcow2", final, out)]
