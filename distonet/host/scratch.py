"""Where a stage is written while it is made: a tmpfs, then copied into the store whole.

dpkg creates, renames and deletes each file of a package (and update-initramfs copies the
modules into a temporary tree and deletes it); on a disk file system every one of those is a
journalled metadata change, in memory it is nearly free. The finished tree is then copied once
(`cp -a`: owners, modes, hard links, xattrs such as overlayfs' opaque marks, times), and the store
commits it as before. diskimage-builder and mkosi build in memory for the same reason.

The tmpfs takes at most half of the memory available when it is mounted, so two builds side by
side cannot take it all; a stage that outgrows it is made again on disk. DISTONET_SCRATCH=disk
turns the tmpfs off (a host short of memory).
"""

from __future__ import annotations

import os
from pathlib import Path

from .ledger import Ledger
from .run import Runner

MIN_BYTES = 512 << 20    # less memory than this free: not worth trying
FULL = 0.9               # a failed stage whose tmpfs is this full ran out of room


def wanted() -> bool:
    return os.environ.get("DISTONET_SCRATCH", "ram").lower() not in ("disk", "off", "no", "0")


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def mount(ledger: Ledger, work: Path, key: str) -> Path | None:
    """A fresh tmpfs for the stage `key` (unmounted and removed by the ledger), or None when the
    stage should be made on disk."""
    size = available_bytes() // 2
    if not wanted() or size < MIN_BYTES:
        return None
    where = work / f"scratch-{key[:16]}-{os.getpid()}"
    where.mkdir(parents=True, exist_ok=True)
    ledger.mount(["mount", "-t", "tmpfs", "-o", f"mode=0755,size={size}", "tmpfs", str(where)], where, rmdir=True)
    return where


def full(where: Path) -> bool:
    st = os.statvfs(where)
    return st.f_blocks > 0 and 1 - st.f_bavail / st.f_blocks >= FULL


def keep_argv(where: Path, partial: Path) -> list[str]:
    """Copy the finished tree from the tmpfs into the store's partial directory (on disk).
    Overlayfs' work directory is not content and stays behind."""
    return ["cp", "-a", "--", str(where / "tree"), str(partial) + "/"]


def keep(where: Path, partial: Path, runner: Runner) -> None:
    runner(keep_argv(where, partial))
