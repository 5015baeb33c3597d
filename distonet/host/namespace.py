"""Build mounts live in a private mount namespace of the build process.

Nothing a build mounts is visible to the rest of the host, so no `findmnt` there ever shows it,
and when the build dies — even by SIGKILL — the kernel drops every mount with the namespace
once its last process is gone (children die with the build: see run.py's parent-death signal).
The ledger still undoes mounts in order inside the namespace, for a clean finish and for errors.
"""

from __future__ import annotations

import ctypes
import os

from ..errors import BuildError
from .run import Runner, run

CLONE_NEWNS = 0x00020000
_entered_pid: int | None = None


def enter_private_mounts(runner: Runner = run) -> None:
    """Move this process into a new mount namespace (once per process; forked workers inherit it)."""
    global _entered_pid
    if _entered_pid == os.getpid():
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise BuildError(f"cannot make a private mount namespace: {os.strerror(err)}",
                         hint="distonet builds as root (CAP_SYS_ADMIN)")
    # Without this, mounts would still propagate back to the host through shared peers.
    runner(["mount", "--make-rprivate", "/"])
    _entered_pid = os.getpid()
