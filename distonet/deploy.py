"""Put rootfs.img on LVM the way the sites do it: an LV of exactly the image's size, the image
copied bit for bit, the copy verified against the manifest's checksum."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from . import log
from .errors import BuildError, ToolMissing
from .host.run import Runner, run
from .manifest import MANIFEST, Manifest
from .paths import Paths


def manifest_path(arg: str | Path) -> Path:
    """A manifest, an output directory, or a recipe name."""
    p = Path(arg)
    if p.is_file():
        return p
    if p.is_dir():
        return p / MANIFEST
    if "/" not in str(arg):
        return Paths.default().recipe_output(str(arg)) / MANIFEST
    raise BuildError(f"{arg}: no such manifest, output directory or recipe",
                     hint="give output/<recipe>, its manifest.json, or the recipe's name")


def rootfs_artifact(manifest: Path) -> tuple[Path, int, str]:
    art = Manifest.load(manifest).artifact("rootfs")
    base = manifest.parent.resolve()
    image = (base / art.path).resolve()
    if base not in image.parents:
        raise BuildError(f"{manifest}: artifact path {art.path!r} leaves the output directory")
    return image, art.size, art.sha256


def sha256_prefix(path: Path, size: int, bufsize: int = 4 << 20, direct: bool = False) -> str:
    """sha256 of the first `size` bytes (an LV may be larger than what was copied into it).
    `direct`: drop the page cache first, so a block device's read-back comes from the device."""
    digest, left = hashlib.sha256(), size
    with open(path, "rb") as fh:
        if direct:
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        while left > 0:
            chunk = fh.read(min(bufsize, left))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    if left:
        raise BuildError(f"{path}: shorter than {size} bytes")
    return digest.hexdigest()


def copy_verify(image: Path, target: Path, size: int, sha256: str, runner: Runner = run) -> None:
    source = sha256_prefix(image, size)  # first: a changed image must not be copied as if good
    if source != sha256:
        raise BuildError(f"{image}: does not match its manifest (sha256 {source} != {sha256})",
                         hint="rebuild the recipe; the image changed after it was built")
    runner(["dd", f"if={image}", f"of={target}", "bs=4M", "conv=notrunc,fsync", "status=none"])
    got = sha256_prefix(target, size, direct=True)
    if got != sha256:
        raise BuildError(f"{target}: copy does not match {image} (sha256 {got} != {sha256})",
                         hint="the target device may be failing; do not boot from it")


def deploy_lvm(manifest: Path, vg: str, lv: str, runner: Runner = run, dry_run: bool = False) -> Path:
    image, size, sha256 = rootfs_artifact(Path(manifest))
    target = Path(f"/dev/{vg}/{lv}")
    create = ["lvcreate", "--yes", "--wipesignatures", "y", "--size", f"{size}b", "--name", lv, vg]
    if dry_run:
        log.always(" ".join(create))
        log.always(f"dd if={image} of={target} bs=4M conv=notrunc,fsync  # then sha256 of the first {size} bytes")
        return target
    log.info(f"deploy: lvcreate {vg}/{lv} of {size} bytes, copy {image.name}, verify sha256")
    try:
        runner(create)
    except ToolMissing:
        raise ToolMissing("lvcreate: not found", hint="apt-get install lvm2") from None
    try:
        actual = int(runner(["blockdev", "--getsize64", str(target)], capture=True).stdout.strip() or 0)
        if actual != size:
            raise BuildError(f"{target}: LV is {actual} bytes, the image {size}",
                             hint="the volume group's extent size must divide the image size "
                                  "(outputs.rootfs.extent_mib in the recipe)")
        copy_verify(image, target, size, sha256, runner)
    except BaseException:
        runner(["lvremove", "--yes", f"{vg}/{lv}"], check=False)  # not a half-written LV left behind
        raise
    return target
