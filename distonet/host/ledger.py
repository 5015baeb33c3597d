"""Every mount, loop device and process a build starts is recorded on disk and undone in reverse.

The record is written *before* the action, so a SIGKILL between the two leaves an entry
whose undo is a no-op rather than a mount nobody knows about. A later run calls `recover()`
and undoes what dead processes left behind (diskimage-builder's rollback + state file idea).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Sequence

from .. import log
from ..errors import BuildError
from . import run as runmod
from .run import Runner, run


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22: starttime


def mount_points(pid: str = "self") -> list[str]:
    """Mount points in a process's mount namespace (octal escapes decoded)."""
    try:
        with open(f"/proc/{pid}/mountinfo") as fh:
            return [line.split()[4].encode().decode("unicode_escape") for line in fh]
    except OSError:
        return []


def _is_mounted(target: str) -> bool:
    return target in mount_points()


class Ledger:
    """Context manager: `with Ledger(dir) as ledger: ledger.mount(...)`; exit undoes all in reverse."""

    def __init__(self, state_dir: Path, runner: Runner = run):
        self.state_dir = Path(state_dir)
        self.runner = runner
        self.entries: list[dict] = []
        self.path = self.state_dir / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        self._old_term = None

    # -- bookkeeping -------------------------------------------------------------------
    def _save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "start": _start_time(os.getpid()),
                                   "entries": self.entries}))
        os.replace(tmp, self.path)

    def _record(self, entry: dict) -> dict:
        """Written down before the thing is done, or the thing is not done: a build killed in
        between would leave what no one knows to undo."""
        self.entries.append(entry)
        try:
            self._save()
        except OSError as exc:
            self.entries.remove(entry)
            raise BuildError(f"{self.path}: cannot note what this build holds: {exc.strerror}",
                             hint="free space where the stage cache is (DISTONET_CACHE): its ledger/ is there") \
                from exc
        return entry

    def _forget(self, entry: dict) -> None:
        self.entries.remove(entry)
        self._save_if_possible()

    def _save_if_possible(self) -> None:
        """While undoing, a state file that cannot be written (a full disk) must not stop the
        undo: the file then names more than is held, which the next run's recovery tolerates."""
        try:
            self._save()
        except OSError as exc:
            log.info(f"ledger: {self.path}: not saved ({exc.strerror})")

    # -- actions -------------------------------------------------------------------------
    def mount(self, argv: Sequence[str], target: Path | str, rmdir: bool = False) -> str:
        """Run a mount command whose mount point is `target`; record its undo first.
        With rmdir, the (empty) mount point is removed after unmounting."""
        target = os.path.realpath(target)
        self._record({"kind": "mount", "target": target, "rmdir": rmdir})
        self.runner(list(argv))
        return target

    def bind(self, source: Path | str, target: Path | str, readonly: bool = False) -> str:
        target = self.mount(["mount", "--bind", str(source), str(target)], target)
        if readonly:
            self.runner(["mount", "-o", "remount,bind,ro", target])
        return target

    def mounts_under(self, path: Path | str) -> None:
        """For tools that mount on their own (mmdebstrap): undo unmounts whatever is below path."""
        self._record({"kind": "under", "path": os.path.realpath(path)})

    def spawn(self, argv: Sequence[str], **popen) -> subprocess.Popen:
        """Start a long-lived process (a server, a VM) in its own group; undo ends the group."""
        proc = subprocess.Popen(list(argv), process_group=0, preexec_fn=runmod.die_with_parent, **popen)
        try:
            self._record({"kind": "process", "pid": proc.pid, "start": _start_time(proc.pid)})
        except BaseException:            # not noted (a full disk): not left running either
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        return proc

    def _watch(self, pid: int) -> dict:
        # A command's process, noted while it runs (an umount while undoing too): best effort.
        entry = {"kind": "process", "pid": pid, "start": _start_time(pid)}
        self.entries.append(entry)
        self._save_if_possible()
        return entry

    def _unwatch(self, entry: dict) -> None:
        if entry in self.entries:
            self._forget(entry)

    def undo_last(self) -> None:
        if self.entries:
            entry = self.entries[-1]
            try:
                undo(entry, self.runner)
            finally:
                # Forget the entry that was undone (or failed), even when the state file cannot
                # be saved (a full disk): the next undo must be of the entry before it.
                self.entries.pop()
                self._save_if_possible()

    def mark(self) -> int:
        return len(self.entries)

    def undo_to(self, mark: int) -> None:
        """Undo, newest first, what was recorded after `mark` (a nested scope)."""
        while len(self.entries) > mark:
            self.undo_last()

    def close(self) -> None:
        """Undo everything in reverse order, then drop the state file."""
        errors = []
        while self.entries:
            try:
                self.undo_last()
            except Exception as exc:  # keep undoing the rest; report after
                errors.append(exc)
        self.path.unlink(missing_ok=True)
        if errors:
            raise errors[0]

    def __enter__(self) -> "Ledger":
        self._save()
        self._observers = (runmod.spawn_observer, runmod.exit_observer)
        runmod.spawn_observer, runmod.exit_observer = self._watch, self._unwatch
        if _in_main_thread():
            self._old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(self, *exc) -> None:
        runmod.spawn_observer, runmod.exit_observer = self._observers
        try:
            self.close()
        finally:
            if self._old_term is not None:
                signal.signal(signal.SIGTERM, self._old_term)


def _in_main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def mounts_below(path: str) -> list[str]:
    """Mount points at or below path, deepest first."""
    prefix = path.rstrip("/") + "/"
    targets = mount_points()
    found = [t for t in targets if t == path or t.startswith(prefix)]
    return sorted(set(found), key=len, reverse=True)


def undo(entry: dict, runner: Runner = run) -> None:
    kind = entry["kind"]
    if kind == "under":
        for target in mounts_below(entry["path"]):
            if runner(["umount", target], check=False).returncode != 0:
                runner(["umount", "-l", target], check=False)
    elif kind == "mount":
        target = entry["target"]
        if _is_mounted(target):
            if runner(["umount", "-R", target], check=False).returncode != 0:
                runner(["umount", "-R", "-l", target], check=False)
        if entry.get("rmdir") and not _is_mounted(target):
            try:
                os.rmdir(target)
            except OSError:
                pass
    elif kind == "loop":
        dev = entry.get("device")
        if dev:
            runner(["partx", "-d", dev], check=False)
            runner(["losetup", "-d", dev], check=False)
    elif kind == "process":
        # Each process was started as the leader of its own group: end the whole group.
        pid = entry["pid"]
        # Only a process whose start time matches is ours: a recycled pid belongs to someone else,
        # and its group is never signalled.
        if not (entry.get("start") and _start_time(pid) == entry["start"]):
            return
        _signal_group(pid, signal.SIGTERM)
        for _ in range(50):
            _reap(pid)
            if _start_time(pid) != entry["start"]:
                break
            time.sleep(0.1)
        if _start_time(pid) == entry["start"]:
            _signal_group(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _reap(pid: int) -> None:
    """Collect our own exited child, so it does not linger as a zombie that looks alive."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def recover(state_dir: Path, runner: Runner = run) -> int:
    """Undo what builds that died (SIGKILL, power loss) left behind. Returns entries undone."""
    state_dir = Path(state_dir)
    count = 0
    for path in sorted(state_dir.glob("*.json")) if state_dir.is_dir() else []:
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            continue  # gone since the listing: its owner finished, or another build recovered it
        except (OSError, ValueError) as exc:
            # Not silently: an unreadable record may stand for mounts nobody will undo.
            log.info(f"recover: {path} is unreadable ({exc}); set aside as {path.name}.bad")
            try:
                path.replace(path.with_name(path.name + ".bad"))
            except FileNotFoundError:
                pass
            continue
        if state.get("start") and _start_time(state["pid"]) == state["start"]:
            continue  # its owner is alive: not ours to touch
        for entry in reversed(state.get("entries", [])):
            log.info(f"recover: undoing {entry} left by dead pid {state['pid']}")
            undo(entry, runner)
            count += 1
        path.unlink(missing_ok=True)
    return count
