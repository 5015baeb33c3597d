"""The snapshot store: stage directories, stamps, partials, locks, mounts, prune and clean.

    cache/stages/<key32>/tree        bootstrap: a full tree; later stages: an overlayfs upper dir
    cache/stages/<key32>/stamp.json  written last; without it the snapshot does not count
    cache/stages/<key32>.partial-<pid>/   a stage being built (renamed into place when done)
    cache/stages/<key32>.build.lock  held exclusively by the one process building the stage
    cache/stages/<key32>.use.lock    held shared by every build whose plan uses the stage, for
                                     the whole run; prune and clean take it exclusively and
                                     without waiting, so they never remove what a build uses

The key names content only (kind, version, parent key, inputs with the archive state): two
builders using different mirrors of one archive state compute the same keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
import subprocess
from typing import Callable, Iterable, Iterator, Sequence

from . import faults
from .errors import BuildError
from .fsutil import sync_tree, write_atomic
from .host.ledger import Ledger, mounts_below
from .host.locks import try_lock, wait_lock

KEY_CHARS = 32

# Open lock files this process holds for its lifetime, by path (children forked by doit -n share them).
_held: dict[str, int] = {}


@dataclass
class InFlight:
    """A finished stage being copied from its tmpfs into the store while the build goes on:
    until it is committed, this process reads the tree from the tmpfs and the stamp from here."""
    key: str
    tree: Path                     # the tree in the tmpfs
    partial: Path                  # where the copy goes
    stamp: dict
    copy: "subprocess.Popen"
    resources: contextlib.ExitStack   # the tmpfs (its ledger) and the stage's build lock
    after: "Callable[[dict], None]"   # once committed (the push to a shared stage cache)


# By stage directory: copies this process started and has not committed yet.
_in_flight: dict[str, InFlight] = {}


def short(key: str) -> str:
    return key[:12]


def dir_name(key: str) -> str:
    return key[:KEY_CHARS]


def remove_tree(path: Path) -> None:
    """Delete a directory, refusing while anything below it is mounted (in this namespace)."""
    if not (path.exists() or path.is_symlink()):
        return
    below = mounts_below(os.path.realpath(path))
    if below:
        raise BuildError(f"refusing to delete {path}: still mounted: {', '.join(below)}",
                         hint="a build may still be running; otherwise reboot-free clean-up: "
                              "`umount -R` the paths shown")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


@dataclass(frozen=True)
class Removed:
    path: Path
    bytes: int


class StageStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    # -- paths ---------------------------------------------------------------------------
    def dir(self, key: str) -> Path:
        return self.root / dir_name(key)

    def tree(self, key: str) -> Path:
        flying = _in_flight.get(str(self.dir(key)))
        return flying.tree if flying else self.dir(key) / "tree"

    def stamp_path(self, key: str) -> Path:
        return self.dir(key) / "stamp.json"

    def done(self, key: str) -> bool:
        return str(self.dir(key)) in _in_flight or self.stamp_path(key).is_file()

    def read_stamp(self, key: str) -> dict:
        if str(self.dir(key)) in _in_flight:
            return _in_flight[str(self.dir(key))].stamp
        try:
            return json.loads(self.stamp_path(key).read_text())
        except (OSError, ValueError) as exc:
            raise BuildError(f"{self.stamp_path(key)}: unreadable stamp ({exc})",
                             hint="`distonet prune` removes broken snapshots; the next build remakes them") from None

    def _lock_path(self, key: str, kind: str) -> Path:
        return self.root / f"{dir_name(key)}.{kind}.lock"

    # -- locks ---------------------------------------------------------------------------
    def hold(self, keys: Iterable[str]) -> None:
        """Mark `keys` as used by this process until it exits (shared; prune skips them)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for key in keys:
            path = str(self._lock_path(key, "use"))
            if path not in _held:
                _held[path] = wait_lock(Path(path), fcntl.LOCK_SH,
                                         f"stage {short(key)} is being pruned or cleaned by another process")

    @contextlib.contextmanager
    def building(self, key: str, name: str, timeout: float | None = None) -> Iterator[None]:
        """One builder per stage across processes; the kernel drops the lock if its holder dies."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = wait_lock(self._lock_path(key, "build"), fcntl.LOCK_EX,
                        f"stage {name} [{short(key)}] is being built by another process", timeout)
        try:
            yield
        finally:
            os.close(fd)

    # -- building ------------------------------------------------------------------------
    def begin(self, key: str) -> Path:
        """A fresh partial directory for `key`. Call holding `building(key)`: any other partial of
        the key belongs to a build that died, whatever its pid says."""
        self.root.mkdir(parents=True, exist_ok=True)
        for partial in self.root.glob(f"{dir_name(key)}.partial-*"):
            remove_tree(partial)
        partial = self.root / f"{dir_name(key)}.partial-{os.getpid()}"
        partial.mkdir()
        return partial

    def commit(self, key: str, partial: Path, stamp: dict) -> dict:
        """Rename the partial into place, then write the stamp: the snapshot now counts."""
        try:
            shutil.rmtree(partial / "work", ignore_errors=True)  # overlayfs' work dir is not content
            sync_tree(partial)   # the tree is on disk before its stamp says it is done (even after a power cut)
            final = self.dir(key)
            remove_tree(final)  # a snapshot without a stamp is incomplete
            faults.point(f"stage:{stamp.get('stage', short(key))}:made")
            os.replace(partial, final)
        except BaseException:   # an error or a signal: no partial stays behind
            self.abandon(partial)
            raise
        faults.point(f"stage:{stamp.get('stage', short(key))}:renamed")
        write_atomic(self.stamp_path(key), json.dumps(stamp, indent=2))
        faults.point(f"stage:{stamp.get('stage', short(key))}:committed")
        return stamp

    def commit_later(self, key: str, tree: Path, partial: Path, stamp: dict, copy: subprocess.Popen,
                     resources: contextlib.ExitStack, after: Callable[[dict], None]) -> dict:
        """Commit `key` once `copy` (tree → partial) ends: see finish_copies."""
        _in_flight[str(self.dir(key))] = InFlight(key, tree, partial, stamp, copy, resources, after)
        return stamp

    def dead_partials(self) -> Iterator[Path]:
        """Partials of any key whose builder is gone (its build lock is free): a killed build's.
        Each is yielded while we hold that lock, so no builder can start on it meanwhile."""
        for partial in sorted(self.root.glob("*.partial-*")) if self.root.is_dir() else []:
            fd = try_lock(self.root / f"{partial.name.split('.', 1)[0]}.build.lock", fcntl.LOCK_EX)
            if fd is None:
                continue
            try:
                yield partial
            finally:
                os.close(fd)

    def clear_dead_partials(self) -> list[Path]:
        gone = []
        for partial in self.dead_partials():
            remove_tree(partial)
            gone.append(partial)
        return gone

    def abandon(self, partial: Path) -> None:
        shutil.rmtree(partial, ignore_errors=True)

    # -- mounting ------------------------------------------------------------------------
    def mount(self, ledger: Ledger, keys: Sequence[str], merged: Path,
              upper: Path | None = None, work: Path | None = None) -> Path:
        """Mount the layers `keys` (topmost first) at `merged`: read-only, or writable into `upper`."""
        from .host.chroot import mount_layers
        self.hold(keys)
        return mount_layers(ledger, [self.tree(k) for k in keys], merged, upper, work)

    # -- removing ------------------------------------------------------------------------
    def entries(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if not p.name.endswith(".lock"))

    def gc(self, keep: set[str], dry_run: bool = False) -> tuple[list[Removed], list[Path]]:
        """Remove snapshots and partials whose key is not in `keep` and that no process uses.
        Returns (removed, busy)."""
        removed, busy = [], []
        for entry in self.entries():
            name = entry.name.split(".", 1)[0]
            if name in {dir_name(k) for k in keep}:
                continue
            got = self._remove_unused(entry, name, dry_run)
            (removed.append(got) if got else busy.append(entry))
        return removed, busy

    def _remove_unused(self, entry: Path, name: str, dry_run: bool) -> Removed | None:
        use = self.root / f"{name}.use.lock"
        build = self.root / f"{name}.build.lock"
        fd_use = try_lock(use, fcntl.LOCK_EX)
        if fd_use is None:
            return None
        fd_build = try_lock(build, fcntl.LOCK_EX)
        try:
            if fd_build is None:
                return None
            size = tree_bytes(entry)
            if not dry_run:
                remove_tree(entry)
                if not any(self.root.glob(f"{name}.partial-*")) and not (self.root / name).exists():
                    use.unlink(missing_ok=True)
                    build.unlink(missing_ok=True)
            return Removed(entry, size)
        finally:
            os.close(fd_use)
            if fd_build is not None:
                os.close(fd_build)

    def remove(self, keys: Iterable[str], dry_run: bool = False) -> tuple[list[Removed], list[Path]]:
        """Remove these keys' snapshots (and partials) unless in use."""
        removed, busy = [], []
        for key in keys:
            for entry in [self.dir(key), *self.root.glob(f"{dir_name(key)}.partial-*")]:
                if entry.exists():
                    got = self._remove_unused(entry, dir_name(key), dry_run)
                    (removed.append(got) if got else busy.append(entry))
        return removed, busy


def finish_copies() -> None:
    """Wait for this process's stage copies, oldest first, and commit each; then release its
    tmpfs and build lock. A copy that failed leaves no snapshot (the next build remakes it)."""
    errors = []
    while _in_flight:
        path = next(iter(_in_flight))
        f = _in_flight[path]
        ok = False
        try:
            code = f.copy.wait()
            if code != 0:
                shutil.rmtree(f.partial, ignore_errors=True)
                raise BuildError(f"copying stage {short(f.key)} into {path} failed (cp exit {code})",
                                 hint="see the build log; check the free space of the stage cache")
            StageStore(Path(path).parent).commit(f.key, f.partial, f.stamp)
            ok = True
        except Exception as exc:
            errors.append(exc)
        finally:
            del _in_flight[path]
            try:
                f.resources.close()
            except Exception as exc:
                errors.append(exc)
        if ok:
            f.after(f.stamp)
    if errors:
        raise errors[0]
