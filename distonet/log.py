"""Timed, nested step logging, a verbosity every message obeys, and the build log.

Levels: 0 quiet (errors and the final summary only), 1 normal (steps), 2 verbose (every
command's own output on the terminal too). The level comes from DISTONET_VERBOSITY, so doit's
worker processes inherit it. Commands' output always goes to the build log (`log_file()`),
whose tail an error shows.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

QUIET, NORMAL, VERBOSE = 0, 1, 2
_state = {"depth": 0, "file": None}


def level() -> int:
    try:
        return int(os.environ.get("DISTONET_VERBOSITY", NORMAL))
    except ValueError:
        return NORMAL


def set_level(value: int) -> None:
    os.environ["DISTONET_VERBOSITY"] = str(value)


def set_log_file(path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    _state["file"] = path


def log_file() -> Path | None:
    return _state["file"]


def _write_file(msg: str) -> None:
    path = _state["file"]
    if path is not None:
        try:
            with open(path, "a") as fh:
                fh.write(f"{time.strftime('%H:%M:%S')} {msg}\n")
        except OSError:
            pass


def info(msg: str) -> None:
    _write_file(msg)
    if level() >= NORMAL:
        print(f"{'  ' * _state['depth']}{msg}", file=sys.stderr, flush=True)


def detail(msg: str) -> None:
    _write_file(msg)
    if level() >= VERBOSE:
        print(f"{'  ' * _state['depth']}{msg}", file=sys.stderr, flush=True)


def always(msg: str) -> None:
    _write_file(msg)
    print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def step(title: str):
    """Log the start, end and duration of a step; yields a dict that receives 'seconds'."""
    info(f"▶ {title}")
    _state["depth"] += 1
    start = time.monotonic()
    record: dict = {}
    ok = False
    try:
        yield record
        ok = True
    finally:
        _state["depth"] -= 1
        record["seconds"] = round(time.monotonic() - start, 2)
        info(f"{'✔' if ok else '✘'} {title} ({record['seconds']:.1f}s)")
