"""Is a step current? The up-to-date checks doit runs before each step. They are kept apart
from the builders (actions.py) and read only what a plan's summary gives (names, keys,
directories), so a build with nothing to do imports neither the builders nor the recipe
models: that is most of a no-op build's time (plancache.py)."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from . import outdir
from .errors import BuildError
from .manifest import Artifact, Manifest
from .store import StageStore


@dataclass
class Hashing:
    """An output made, its artifacts being hashed in a thread while the build goes on. The
    thread writes the output's state (what says it is made) when the digests are in, then
    releases its locks: a later step in another process (doit -P process) waits on the lock."""
    future: Future
    directory: Path
    key: str
    arts: list[Artifact]


# (staging directory, output name) → its hashing, in this process (actions.build_output fills it)
HASHING: dict[tuple[str, str], Hashing] = {}


def stage_done(plan, stage) -> bool:
    """Complete, and so are the layers below it (a pruned parent invalidates its children)."""
    store = StageStore(plan.paths.stages)
    return all(store.done(s.key) for s in stage.ancestry())


def in_hashing(plan, name: str) -> Hashing | None:
    h = HASHING.get((str(outdir.staging(plan.out_dir)), name))
    return h if h is not None and h.key == plan.output(name).key else None


def made(plan, name: str, wait: bool = False) -> tuple[Path, list[Artifact]] | None:
    """Where the output made for its current key is, and its artifacts; None if not made. With
    `wait`, first wait for another process that holds the output (making or hashing it)."""
    h = in_hashing(plan, name)
    if h is not None:
        return h.directory, h.arts
    if wait:
        # made in another process (doit -P process) and hashed there: the files can be read now
        where = outdir.find_unhashed(plan.out_dir, name, plan.output(name).key)
        if where is not None:
            return where, outdir.artifacts(where, name)
        with outdir.locked(plan.out_dir, name):
            pass
    where = outdir.find(plan.out_dir, name, plan.output(name).key)
    return (where, outdir.artifacts(where, name)) if where is not None else None


def output_current(plan, name: str) -> bool:
    return made(plan, name) is not None


def manifest_current(plan) -> bool:
    current = plan.out_dir
    try:
        m = Manifest.load(current)
    except BuildError:
        return False
    return m.build_id == plan.build_id and all(
        outdir.intact(current, outdir.read_state(current, o.name), o.key) for o in plan.outputs)
