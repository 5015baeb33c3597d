"""Layered trees (overlayfs stacks of stage snapshots) and the mounts a chroot needs."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Sequence

from .ledger import Ledger
from .locks import wait_lock

CHROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
    "DEBCONF_NONINTERACTIVE_SEEN": "true",
    "LC_ALL": "C.UTF-8",
    "HOME": "/root",
}


DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = {"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
             "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}


def overlay_options(lowers: Sequence[Path], upper: Path | None = None, work: Path | None = None) -> str:
    """lowerdir lists the topmost layer first, as overlayfs wants it. xino=on: the layers may sit
    on two file systems (a stage being made, or in flight, in a tmpfs over the store on disk), and
    without it a file reports its own layer's st_dev, so tools that stay on one file system
    (mksquashfs -one-file-system, tar --one-file-system) would skip it; with it every file reports
    the overlay's device and an inode number unique across the layers."""
    opts = ["lowerdir=" + ":".join(str(p) for p in lowers)]
    if upper is not None:
        opts += [f"upperdir={upper}", f"workdir={work}"]
    return ",".join([*opts, "xino=on"])


def mount_layers(ledger: Ledger, lowers: Sequence[Path], merged: Path,
                 upper: Path | None = None, work: Path | None = None) -> Path:
    """Mount the stack at `merged`: writable when `upper` is given, else read-only."""
    merged.mkdir(parents=True, exist_ok=True)
    if upper is None and len(lowers) == 1:
        ledger.mount(["mount", "--bind", "-o", "ro", str(lowers[0]), str(merged)], merged, rmdir=True)
    else:
        opts = overlay_options(lowers, upper, work)
        if upper is None:
            opts += ",ro"
        ledger.mount(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], merged, rmdir=True)
    return merged


@contextlib.contextmanager
def chroot_session(ledger: Ledger, root: Path, apt_archives: Path | None = None):
    """proc, a read-only sys, a minimal /dev (a tmpfs with only the harmless device nodes, so
    maintainer scripts cannot write the host's disks), devpts, the host's resolv.conf and a
    policy-rc.d that stops daemons from starting; all undone (files removed) when the block ends."""
    created: list[Path] = []
    mount_points: list[Path] = []
    apt_lock = None
    mark = ledger.mark()
    try:
        for sub in ("proc", "sys", "dev", "run"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        ledger.mount(["mount", "-t", "proc", "proc", str(root / "proc")], root / "proc")
        ledger.mount(["mount", "-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", str(root / "sys")],
                     root / "sys")
        ledger.mount(["mount", "-t", "tmpfs", "-o", "mode=0755,nosuid,size=16m", "tmpfs", str(root / "dev")],
                     root / "dev")
        for node in DEV_NODES:
            (root / "dev" / node).touch()
            ledger.bind(f"/dev/{node}", root / "dev" / node)
        for link, target in DEV_LINKS.items():
            (root / "dev" / link).symlink_to(target)
        (root / "dev/pts").mkdir()
        (root / "dev/shm").mkdir()
        ledger.mount(["mount", "-t", "devpts", "devpts", "-o", "newinstance,ptmxmode=0666",
                      str(root / "dev/pts")], root / "dev/pts")
        ledger.mount(["mount", "-t", "tmpfs", "tmpfs", str(root / "run")], root / "run")
        restore_resolv = _lend_resolv_conf(root / "etc/resolv.conf")
        policy = root / "usr/sbin/policy-rc.d"
        if not policy.exists():
            policy.write_text("#!/bin/sh\n# distonet: no daemons start while the image is built\nexit 101\n")
            policy.chmod(0o755)
            created.append(policy)
        for local in local_repositories(root):  # file:// repositories, read-only at their own path
            inside = root / str(local).lstrip("/")
            made = [p for p in [inside, *inside.parents] if root in p.parents and not p.exists()]
            inside.mkdir(parents=True, exist_ok=True)
            mount_points.extend(reversed(made))  # removed again: not part of the image
            ledger.bind(local, inside, readonly=True)
        if apt_archives is not None:
            # apt locks the download cache for its whole run and fails at once when another
            # build holds it: concurrent builds on one host take turns here instead.
            apt_lock = wait_lock(apt_archives.parent / "apt-archives.lock", fcntl.LOCK_EX,
                                 "another build is using the shared apt download cache")
            (apt_archives / "partial").mkdir(parents=True, exist_ok=True)
            target = root / "var/cache/apt/archives"
            target.mkdir(parents=True, exist_ok=True)
            ledger.bind(apt_archives, target)
        yield root
    finally:
        ledger.undo_to(mark)
        if apt_lock is not None:
            os.close(apt_lock)
        for path in reversed(created):
            path.unlink(missing_ok=True)
        for path in reversed(mount_points):  # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()
        if "restore_resolv" in locals():
            restore_resolv()


def local_repositories(root: Path) -> list[Path]:
    """The host directories of the file:// repositories distonet added to the tree."""
    found = []
    for f in sorted((root / "etc/apt/sources.list.d").glob("distonet-*.sources")):
        for line in f.read_text().splitlines():
            if line.startswith("URIs:"):
                found += [Path(u[len("file://"):] if u.startswith("file://") else u[len("file:"):])
                          for u in line.split()[1:] if u.startswith("file:")]
    return [p for p in found if p.is_dir()]


def _lend_resolv_conf(resolv: Path):
    """Give the chroot the host's resolvers for the length of the session; return the undo.
    A regular file is replaced by a copy (not a bind mount: a package such as systemd-resolved
    may replace the file by a symlink) and put back unless a package made its own. A symlink
    into /run (systemd-resolved's stub, from an earlier layer) gets the copy at its target, on
    the session's own /run tmpfs, so nothing changes in the tree. Any other symlink is swapped
    for a copy and put back."""
    host = Path("/etc/resolv.conf")
    if not host.exists():
        return lambda: None
    lent = host.read_bytes()
    root = resolv.parent.parent
    if resolv.is_symlink():
        link = os.readlink(resolv)
        target = (resolv.parent / link) if not link.startswith("/") else root / link.lstrip("/")
        target = Path(os.path.normpath(target))
        if root / "run" in target.parents:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(lent)
            return lambda: None  # the tmpfs goes with the session
        resolv.unlink()
        resolv.write_bytes(lent)

        def put_link_back() -> None:
            if resolv.exists() and not resolv.is_symlink() and resolv.read_bytes() == lent:
                resolv.unlink()
                resolv.symlink_to(link)
        return put_link_back
    before = resolv.read_bytes() if resolv.exists() else None
    resolv.parent.mkdir(parents=True, exist_ok=True)
    resolv.write_bytes(lent)

    def restore() -> None:
        if resolv.is_symlink() or not resolv.exists() or resolv.read_bytes() != lent:
            return  # the image made its own
        if before is None:
            resolv.unlink()
        else:
            resolv.write_bytes(before)
    return restore


def chroot_argv(root: Path, argv: Sequence[str], env: dict[str, str] | None = None) -> list[str]:
    """argv run inside `root`, in a PID namespace of its own with its own /proc: maintainer
    scripts see and signal only their own processes, and whatever they start (a daemon that
    escaped policy-rc.d, say) dies with the command, since the namespace ends with its first
    process and that process dies with unshare (--kill-child)."""
    env = [f"{k}={v}" for k, v in {**CHROOT_ENV, **(env or {})}.items()]
    return ["unshare", "--pid", "--fork", "--kill-child", f"--mount-proc={root}/proc",
            "chroot", str(root), "/usr/bin/env", "-i", *env, *argv]
