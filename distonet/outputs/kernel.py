"""vmlinuz and initrd.img, taken from the sealed tree for the netboot outputs."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..errors import BuildError
from ..manifest import Artifact
from . import Output


def _version_key(version: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", version)]


def find_kernel(tree: Path) -> tuple[str, Path, Path]:
    """(version, vmlinuz, initrd) of the newest kernel in /boot that has an initrd."""
    found = []
    for vmlinuz in (tree / "boot").glob("vmlinuz-*"):
        version = vmlinuz.name[len("vmlinuz-"):]
        initrd = tree / "boot" / f"initrd.img-{version}"
        if initrd.is_file():
            found.append((version, vmlinuz, initrd))
    if not found:
        raise BuildError(f"no kernel with an initrd in {tree}/boot",
                         hint="the recipe's kernel.package and kernel.initramfs must install both")
    return max(found, key=lambda f: _version_key(f[0]))


def copy_atomic(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


class Kernel(Output):
    name = "kernel"

    def files(self) -> list[str]:
        return ["vmlinuz", "initrd.img"]

    def make(self, tree: Path, ledger, runner) -> list[Artifact]:
        out = self.plan.out_dir
        version, vmlinuz, initrd = find_kernel(tree)
        copy_atomic(vmlinuz, out / "vmlinuz")
        copy_atomic(initrd, out / "initrd.img")
        return [Artifact.of("kernel", out / "vmlinuz", out), Artifact.of("initrd", out / "initrd.img", out)]
