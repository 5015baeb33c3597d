"""Boots side by side. TCG runs a guest's one vCPU on one host core, so on a machine with two
cores two boots take the time of one. Each boot runs in a forked process of its own (a boot's
ledger and its signal handling belong to its process's main thread); the calls reach the
children through the fork, since a plan does not pickle. A child gets SIGTERM if the process
that forked it dies, which unwinds its ledger: its QEMU and servers go with it."""

from __future__ import annotations

import os
import signal

_CALLS: list = []


def _die_with_parent() -> None:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)       # PR_SET_PDEATHSIG


def _call(i: int):
    return _CALLS[i]()


def side_by_side(*calls, jobs: int | None = None) -> list:
    """Each call (a callable without arguments: functools.partial) made, up to `jobs` (default:
    the cores) at once; the results in the calls' order."""
    jobs = min(len(calls), jobs or os.cpu_count() or 1)
    _CALLS[:] = calls
    if jobs <= 1:
        return [_call(i) for i in range(len(calls))]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    try:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork"),
                                 initializer=_die_with_parent) as pool:
            return list(pool.map(_call, range(len(calls))))
    finally:
        _CALLS.clear()
