"""flock(2) locks that say once what they wait for: stage and output locks, the shared apt
download cache."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from .. import log
from ..errors import BuildError


def try_lock(path: Path, mode: int) -> int | None:
    """An fd holding `mode` on path, or None if another process holds a conflicting lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd


def wait_lock(path: Path, mode: int, what: str, timeout: float | None = None) -> int:
    """Take the lock, saying once that we wait (and for what) when another process holds it."""
    fd = try_lock(path, mode)
    if fd is not None:
        return fd
    log.info(f"waiting: {what}")
    start = time.monotonic()
    while fd is None:
        if timeout is not None and time.monotonic() - start > timeout:
            raise BuildError(f"gave up waiting after {timeout:.0f}s: {what}",
                             hint="another distonet process holds it; see `ps -ef | grep distonet`")
        time.sleep(0.2)
        fd = try_lock(path, mode)
    return fd
