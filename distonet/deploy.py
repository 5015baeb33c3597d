"""Put rootfs.img on LVM the way the sites do it: an LV of exactly the image's size, the image
copied bit for bit, the copy verified against the manifest's checksum."""

from __future__ import annotations

import hashlib
from pathlib import Path

from . import log
from .errors import BuildError
from .manifest import artifacts_from, read_manifest
from .run import Runner, run


def rootfs_artifact(manifest: Path) -> tuple[Path, int, str]:
    data = read_manifest(manifest)
    for art in artifacts_from(data):
        if art.kind == "rootfs":
            return manifest.parent / art.path, art.size, art.sha256
    raise BuildError(f"{manifest}: no rootfs artifact", hint="enable outputs.rootfs in the recipe and rebuild")


def sha256_prefix(path: Path, size: int, bufsize: int = 4 << 20) -> str:
    """sha256 of the first `size` bytes (an LV may be larger than what was copied into it)."""
    digest, left = hashlib.sha256(), size
    with open(path, "rb") as fh:
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
    runner(["dd", f"if={image}", f"of={target}", "bs=4M", "conv=notrunc,fsync", "status=none"])
    got = sha256_prefix(target, size)
    if got != sha256:
        raise BuildError(f"{target}: copy does not match {image} (sha256 {got} != {sha256})",
                         hint="the target device may be failing; do not boot from it")


def deploy_lvm(manifest: Path, vg: str, lv: str, runner: Runner = run) -> Path:
    image, size, sha256 = rootfs_artifact(Path(manifest))
    target = Path(f"/dev/{vg}/{lv}")
    log.info(f"deploy: lvcreate {vg}/{lv} of {size} bytes, copy {image.name}, verify sha256")
    runner(["lvcreate", "--yes", "--wipesignatures", "y", "--size", f"{size}b", "--name", lv, vg])
    actual = int(runner(["blockdev", "--getsize64", str(target)], capture=True).stdout.strip() or 0)
    if actual != size:
        raise BuildError(f"{target}: LV is {actual} bytes, the image {size}",
                         hint="the volume group's extent size must divide the image size "
                              "(outputs.rootfs.extent_mib in the recipe)")
    copy_verify(image, target, size, sha256, runner)
    return target
