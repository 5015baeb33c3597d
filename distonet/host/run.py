"""The one place that starts subprocesses: argv lists, logging, errors that show the command."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from .. import faults, log
from ..errors import CommandError, ToolMissing


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], *, check: bool = True, capture: bool = False,
                 env: dict | None = None, input: str | None = None,
                 timeout: float | None = None) -> Result: ...


# Set by an open Ledger: each command runs in its own process group, recorded before it does
# work, so a killed build's survivors (apt, dpkg, maintainer scripts) can be ended by the next run.
spawn_observer: "Callable[[int], object] | None" = None
exit_observer: "Callable[[object], None] | None" = None


# No single command of a build runs for hours: a hung one is ended (its whole process group).
# DISTONET_COMMAND_TIMEOUT (seconds) sets another bound: a slow site's, or a test's.
DEFAULT_TIMEOUT = float(os.environ.get("DISTONET_COMMAND_TIMEOUT") or 4 * 3600)


def run(argv: Sequence[str], *, check: bool = True, capture: bool = False, env: dict | None = None,
        input: str | None = None, timeout: float | None = DEFAULT_TIMEOUT) -> Result:
    """Run argv (never a shell string). Its output goes to the build log (and to the terminal
    when verbose); on failure raise CommandError with the quoted command and the output's tail.
    After `timeout` seconds its whole process group is killed."""
    argv = tuple(str(a) for a in argv)
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    logpath = log.log_file()
    sink = None
    if not capture and logpath is not None:
        log.detail(f"$ {shlex.join(argv)}")
        if log.level() < log.VERBOSE:
            sink = open(logpath, "a")
    start_at = sink.tell() if sink else 0
    try:
        proc = subprocess.Popen(argv, env=full_env, text=True, process_group=0,
                                preexec_fn=die_with_parent,
                                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE if capture else sink,
                                stderr=subprocess.PIPE if capture else (subprocess.STDOUT if sink else None))
    except FileNotFoundError as exc:
        if sink:
            sink.close()
        raise ToolMissing(f"{argv[0]}: not found", hint="run ./setup.sh to install the host tools") from exc
    token = spawn_observer(proc.pid) if spawn_observer else None
    try:
        faults.point(f"command:{tool_of(argv)}")
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        error = CommandError(f"command timed out after {timeout:g}s and was killed: {shlex.join(argv)}",
                             hint="a command hung; DISTONET_COMMAND_TIMEOUT (seconds) sets the bound")
        error.timeout = timeout
        raise error from None
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        if sink:
            sink.close()
    if exit_observer and token is not None:
        exit_observer(token)
    result = Result(argv, proc.returncode, out or "", err or "")
    if check and proc.returncode != 0:
        tail = result.stderr.strip() or _tail(logpath, start_at) if (capture or sink) else ""
        detail = f"\n{tail[-2000:]}" if tail else ""
        where = f"\n(full output in {logpath})" if logpath and not capture else ""
        error = CommandError(f"command failed ({proc.returncode}): {shlex.join(argv)}{detail}{where}")
        error.returncode = proc.returncode
        raise error
    return result


def _tail(path, offset: int, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as fh:
            fh.seek(offset)
            return "\n".join(fh.read().strip().splitlines()[-lines:])
    except (OSError, TypeError):
        return ""


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


# Commands that run the next argument (`eatmydata mkfs.ext4 …`): a command is named by its tool.
WRAPPERS = ("eatmydata",)


def tool_of(argv: Sequence[str]) -> str:
    """The tool a command runs: `mkfs.ext4` for `eatmydata mkfs.ext4 …` (fault points name it)."""
    names = [os.path.basename(a) for a in argv]
    return next((n for n in names if n not in WRAPPERS), names[0])


def check_tools(tools: Sequence[str]) -> None:
    """Fail before any work starts when a host tool is missing."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise ToolMissing(f"missing host tools: {', '.join(missing)}",
                          hint="run ./setup.sh (it installs them with apt-get)")
