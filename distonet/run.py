"""The one place that starts subprocesses: argv lists, logging, errors that show the command."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from .errors import CommandError, ToolMissing


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], *, check: bool = True, capture: bool = False,
                 env: dict | None = None, input: str | None = None, cwd: str | None = None) -> Result: ...


# Set by an open Ledger: each command runs in its own process group, recorded before it does
# work, so a killed build's survivors (apt, dpkg, maintainer scripts) can be ended by the next run.
spawn_observer: "Callable[[int], object] | None" = None
exit_observer: "Callable[[object], None] | None" = None


def run(argv: Sequence[str], *, check: bool = True, capture: bool = False, env: dict | None = None,
        input: str | None = None, cwd: str | None = None) -> Result:
    """Run argv (never a shell string). On failure raise CommandError with the quoted command."""
    argv = tuple(str(a) for a in argv)
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        proc = subprocess.Popen(argv, env=full_env, cwd=cwd, text=True, process_group=0,
                                preexec_fn=die_with_parent,
                                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE if capture else None,
                                stderr=subprocess.PIPE if capture else None)
    except FileNotFoundError as exc:
        raise ToolMissing(f"{argv[0]}: not found", hint="run ./setup.sh to install the host tools") from exc
    token = spawn_observer(proc.pid) if spawn_observer else None
    try:
        out, err = proc.communicate(input)
    except BaseException:
        _kill_group(proc)
        raise
    if exit_observer and token is not None:
        exit_observer(token)
    result = Result(argv, proc.returncode, out or "", err or "")
    if check and proc.returncode != 0:
        detail = f"\n{result.stderr.strip()[-2000:]}" if result.stderr.strip() else ""
        raise CommandError(f"command failed ({proc.returncode}): {shlex.join(argv)}{detail}")
    return result


_libc = None


def die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the build process dies (PR_SET_PDEATHSIG)."""
    global _libc
    import ctypes
    _libc = _libc or ctypes.CDLL(None, use_errno=True)
    _libc.prctl(1, signal.SIGKILL)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


class RecordingRunner:
    """A runner for tests: records argv lists and answers from a table of canned results."""

    def __init__(self, answers: dict[str, str] | None = None):
        self.calls: list[tuple[str, ...]] = []
        self.answers = answers or {}

    def __call__(self, argv, *, check=True, capture=False, env=None, input=None, cwd=None) -> Result:
        argv = tuple(str(a) for a in argv)
        self.calls.append(argv)
        out = next((v for k, v in self.answers.items() if shlex.join(argv).startswith(k)), "")
        return Result(argv, 0, out, "")


def check_tools(tools: Sequence[str]) -> None:
    """Fail before any work starts when a host tool is missing."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise ToolMissing(f"missing host tools: {', '.join(missing)}",
                          hint="run ./setup.sh (it installs them with apt-get)")
