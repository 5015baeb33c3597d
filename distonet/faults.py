"""Test-only fault injection: make a build fail, signal itself or hang at a named point.

    DISTONET_FAULT="<point pattern>:<action>[,<pattern>:<action>...]"

Points are named where the build reaches them: `stage:<name>:begin|made|committed`,
`output:<name>:begin|made|committed`, `command:<tool>` (while that command runs, so a signal
lands mid-command), `publish:<recipe>:copied|committed`, `cache:push:<stage>`,
`cache:pull:<stage>`. Patterns are shell globs (`stage:*:made`). Actions:

    fail   raise an error here (the build fails as on any error)
    kill   SIGKILL this process (no handler runs: what a power cut or the OOM killer does)
    term   SIGTERM this process      int   SIGINT to this process's group (a terminal's Ctrl-C)
    hang   sleep until killed (to exercise timeouts)
    full   raise ENOSPC (a full file system)
    stop   SIGSTOP this process: a test changes the world (stops a server), then SIGCONTs it

A fault fires once per process: `DISTONET_FAULT_ONCE=<file>` makes it fire once in all (the
file is created when it fires), so a retried step goes on. Without the variable, `point` costs
one dictionary lookup.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import signal
import time

from .errors import BuildError

ENV = "DISTONET_FAULT"
ONCE_ENV = "DISTONET_FAULT_ONCE"
ACTIONS = ("fail", "kill", "term", "int", "hang", "full", "stop")


class InjectedFault(BuildError):
    """The error a `fail` fault raises: a test can tell it from a real one."""


def parse(spec: str) -> list[tuple[str, str]]:
    rules = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        pattern, sep, action = item.rpartition(":")
        if not sep or not pattern or action not in ACTIONS:
            raise BuildError(f"{ENV}: {item!r} is not <point pattern>:<action>",
                             hint=f"actions: {', '.join(ACTIONS)}; e.g. stage:*:made:kill")
        rules.append((pattern, action))
    return rules


_fired: set[str] = set()


def point(name: str) -> None:
    """Where a fault may be injected; does nothing unless DISTONET_FAULT names this point."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    for pattern, action in parse(spec):
        if fnmatch.fnmatchcase(name, pattern) and _first_time(name):
            fire(name, action)


def _first_time(name: str) -> bool:
    if name in _fired:
        return False
    _fired.add(name)
    once = os.environ.get(ONCE_ENV)
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return False
    return True


def fire(name: str, action: str) -> None:
    if action == "fail":
        raise InjectedFault(f"fault injected at {name}")
    if action == "full":
        raise OSError(errno.ENOSPC, f"No space left on device (fault injected at {name})")
    if action == "hang":
        while True:
            time.sleep(3600)
    if action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    if action == "int":
        os.killpg(os.getpgrp(), signal.SIGINT)
    else:
        os.kill(os.getpid(), signal.SIGKILL if action == "kill" else signal.SIGTERM)
    time.sleep(5)  # the signal is delivered before this returns; a handler raises out of it
