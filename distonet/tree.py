"""Facts read from a sealed tree: its kernel, and how much room its files take."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import BuildError


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


def tree_usage(tree: Path, newer_than: float | None = None) -> tuple[int, int, list[str]]:
    """(bytes allocated in 4 KiB blocks, inode count, the paths whose mtime is after
    `newer_than`) of a tree, not crossing mounts. The paths are the image's ("/" the root,
    "/etc/motd"): one walk sizes the image and finds what reproducible.py clamps (two walks of a
    13,000-file tree took 0.65 s of a 3.7 s rootfs)."""
    used, inodes, newer = 0, 0, []
    dev = tree.stat().st_dev
    if newer_than is not None and os.lstat(tree).st_mtime > newer_than:
        newer.append("/")
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames[:] = [d for d in dirnames if os.lstat(os.path.join(dirpath, d)).st_dev == dev]
        rel = os.path.relpath(dirpath, tree)
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            used += -(-st.st_size // 4096) * 4096
            inodes += 1
            if newer_than is not None and st.st_mtime > newer_than:
                newer.append("/" + os.path.normpath(os.path.join(rel, name)))
    return used, inodes, newer


def package_list(root: Path, runner) -> list[dict]:
    """Installed packages of the tree, from its own dpkg database."""
    out = runner(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W",
                  "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\t"
                        "${source:Package}\t${source:Version}\t${Installed-Size}\n"],
                 capture=True).stdout
    pkgs = []
    for line in out.splitlines():
        status, name, version, arch, source, source_version, size = line.split("\t")
        if status.strip() == "ii":
            pkgs.append({"name": name, "version": version, "architecture": arch, "source": source,
                         "source_version": source_version, "installed_kib": int(size or 0)})
    return sorted(pkgs, key=lambda p: p["name"])
