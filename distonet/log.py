"""Timed, nested step logging so a user sees where the time goes."""

import contextlib
import sys
import time

_depth = 0


def info(msg: str) -> None:
    print(f"{'  ' * _depth}{msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def step(title: str):
    """Log the start, end and duration of a step; yields a dict that receives 'seconds'."""
    global _depth
    info(f"▶ {title}")
    _depth += 1
    start = time.monotonic()
    record: dict = {}
    ok = False
    try:
        yield record
        ok = True
    finally:
        _depth -= 1
        record["seconds"] = round(time.monotonic() - start, 2)
        info(f"{'✔' if ok else '✘'} {title} ({record['seconds']:.1f}s)")
