"""A recipe's output directory, changed as one transaction.

    output/<recipe>/             the current build: artifacts, .state/, manifest.json, SHA256SUMS
    output/.<recipe>.next/       the build being made: changed outputs are written here
    output/.locks/<recipe>.lock  shared while outputs are made, exclusive to commit or clean
    output/.locks/<recipe>.<output>.lock   one maker per output
    output/.trash/<recipe>-<id>/ a replaced build, being removed behind the build

Committing carries the unchanged artifacts over (hard links), writes the manifest last, and
swaps the two directories in one renameat2(RENAME_EXCHANGE): a reader sees the old complete set
or the new one, never a mix, and an interrupted build leaves the current set untouched.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from .errors import BuildError
from .fsutil import fsync_dir, write_atomic
from .manifest import Artifact
from .host.locks import try_lock, wait_lock

if TYPE_CHECKING:
    from .host.run import Runner

STATE = ".state"
TRASH = ".trash"
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def staging(current: Path) -> Path:
    return current.with_name(f".{current.name}.next")


def locks_dir(current: Path) -> Path:
    return current.parent / ".locks"


@contextlib.contextmanager
def locked(current: Path, what: str | None = None, shared: bool = False, wait: bool = True) -> Iterator[None]:
    """The recipe's lock (or one output's, with `what`). Without `wait`, a held lock is an error."""
    d = locks_dir(current)
    d.mkdir(parents=True, exist_ok=True)
    path = d / (f"{current.name}.{what}.lock" if what else f"{current.name}.lock")
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    if wait:
        fd = wait_lock(path, mode, f"another distonet process is building {current.name}"
                        + (f" ({what})" if what else ""))
    else:
        fd = try_lock(path, mode)
        if fd is None:
            raise BuildError(f"{current.name}: a build of this recipe is running",
                             hint="wait for it to finish, or stop it first")
    try:
        yield
    finally:
        os.close(fd)


def file_id(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def read_state(directory: Path, output: str) -> dict | None:
    try:
        state = json.loads((directory / STATE / f"{output}.json").read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def write_state(directory: Path, output: str, key: str, started: float, seconds: float,
                artifacts: list[Artifact], hashing: bool = False) -> None:
    """`hashing`: the files are complete, their digests not in yet (see find_unhashed)."""
    (directory / STATE).mkdir(parents=True, exist_ok=True)
    state = {"key": key, "started": started, "seconds": seconds,
             "artifacts": [a.__dict__ for a in artifacts],
             "files": {a.path: file_id(directory / a.path) for a in artifacts},
             **({"hashing": True} if hashing else {})}
    write_atomic(directory / STATE / f"{output}.json", json.dumps(state, indent=2))


def intact(directory: Path, state: dict | None, key: str, hashing: bool = False) -> bool:
    """Made for `key`, hashed (or, with `hashing`, its digests still to come), and every file
    still the one that was made (size, mtime, inode)."""
    if not state or state.get("key") != key or bool(state.get("hashing")) != hashing:
        return False
    try:
        return all(file_id(directory / f) == ident for f, ident in state["files"].items())
    except (OSError, KeyError, TypeError):
        return False


def find(current: Path, output: str, key: str) -> Path | None:
    """The directory holding a complete `output` made for `key`: the build being made, then the current one."""
    for d in (staging(current), current):
        if intact(d, read_state(d, output), key):
            return d
    return None


def find_unhashed(current: Path, output: str, key: str) -> Path | None:
    """The build being made, if another process has made `output` for `key` and is hashing its
    files: they are complete (renamed in before the state is written), so an output that
    needs them can start; the build's commit still waits for the digests (the output's lock)."""
    d = staging(current)
    return d if intact(d, read_state(d, output), key, hashing=True) else None


def artifacts(directory: Path, output: str) -> list[Artifact]:
    state = read_state(directory, output) or {}
    return [Artifact.load(a) for a in state.get("artifacts", [])]


def carry_over(current: Path, output: str) -> None:
    """Hard-link an unchanged output's files and state from the current build into the next."""
    nxt = staging(current)
    state = read_state(current, output)
    (nxt / STATE).mkdir(parents=True, exist_ok=True)
    for name in state["files"]:
        dest = nxt / name
        dest.unlink(missing_ok=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.link(current / name, dest)
    shutil.copy2(current / STATE / f"{output}.json", nxt / STATE / f"{output}.json")


def prune_next(current: Path, keep_files: set[str], keep_states: set[str]) -> None:
    """Drop from the next build whatever the plan does not name (left by an older attempt).
    Files may sit in folders (pxe/pxelinux.cfg/default): a folder goes when nothing in it stays."""
    nxt = staging(current)
    for path in nxt.iterdir():
        if path.name == STATE:
            for st in path.iterdir():
                if st.stem not in keep_states:
                    st.unlink()
    for dirpath, dirnames, filenames in os.walk(nxt, topdown=False):
        d = Path(dirpath)
        if d == nxt / STATE:
            continue
        for f in filenames:
            if (d / f).relative_to(nxt).as_posix() not in keep_files and d != nxt / STATE:
                (d / f).unlink()
        for sub in dirnames:
            p = d / sub
            if p == nxt / STATE:
                continue
            if p.is_symlink():
                if p.relative_to(nxt).as_posix() not in keep_files:
                    p.unlink()
            elif not any(p.iterdir()):
                p.rmdir()


def exchange(a: Path, b: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise BuildError(f"cannot swap {a} and {b}: {os.strerror(err)}",
                         hint="the output directory must be on a local file system (ext4, xfs, btrfs, tmpfs)")


def swap_in(current: Path, runner: Runner) -> None:
    """Make the next build current in one step; the old one goes to output/.trash/, removed
    behind the build (remove_behind)."""
    nxt = staging(current)
    fsync_dir(nxt)
    if current.exists():
        exchange(nxt, current)
        trash = trash_dir(current)
        trash.mkdir(exist_ok=True)
        os.rename(nxt, trash / f"{current.name}-{uuid.uuid4().hex[:12]}")   # now the old build
        fsync_dir(current.parent)
        remove_behind(trash, runner)
    else:
        os.replace(nxt, current)
        fsync_dir(current.parent)


def trash_dir(current: Path) -> Path:
    return current.parent / TRASH


def remove_behind(trash: Path, runner: Runner) -> None:
    """Remove what is in output/.trash/ in a process of its own (`setsid -f rm -rf`), which the
    build does not wait for. Freeing a replaced set's blocks is slow where the file system is
    mounted with `discard`: each freed extent waits for the journal's discards (0.35 s for one
    synced 700 MB image on this project's build host, 0.05 s without discard), so the removal
    of the old images was 0.9 s of a 5 s rebuild after a one-file overlay change. Entries left
    by a killed removal are taken by the next one; two at once do no harm (rm -f)."""
    entries = sorted(str(p) for p in trash.iterdir())
    if entries:
        runner(["setsid", "--fork", "rm", "-rf", "--one-file-system", "--", *entries])


def in_trash(current: Path) -> list[Path]:
    """The replaced builds of `current`'s recipe not yet removed from output/.trash/."""
    return sorted(p for p in trash_dir(current).glob(f"{current.name}-*")
                  if p.name.rsplit("-", 1)[0] == current.name)
