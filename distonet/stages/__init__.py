"""Stages act on a root tree. Each writes only its own snapshot directory, keyed by the plan:

    cache/stages/<key>/tree        bootstrap: a full tree; later stages: an overlayfs upper dir
    cache/stages/<key>/stamp.json  written last; without it the snapshot does not count

A stage is built in `<key>.partial-<pid>/` and renamed into place, so a killed build leaves
only a partial directory that the next run removes (after undoing its mounts).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from pathlib import Path

from .. import log
from ..chroot import assert_no_mounts_below, mount_layers
from ..ledger import Ledger, recover
from ..plan import BuildPlan, Stage, StageKind
from ..run import Runner, run


def stage_done(plan: BuildPlan, stage: Stage) -> bool:
    """Complete, and so are the layers below it (a pruned parent invalidates its children)."""
    return all(plan.stamp(s).is_file() for s in stage.ancestry())


def read_stamp(plan: BuildPlan, stage: Stage) -> dict:
    return json.loads(plan.stamp(stage).read_text())


def remove_tree(path: Path) -> None:
    if path.exists():
        assert_no_mounts_below(path)
        shutil.rmtree(path)


def _clear_partials(plan: BuildPlan, stage: Stage) -> None:
    """Called holding the stage's lock: any other partial of this stage is a dead build's."""
    mine = f"{stage.key[:32]}.partial-{os.getpid()}"
    for partial in plan.paths.stages.glob(f"{stage.key[:32]}.partial-*"):
        if partial.name != mine:
            remove_tree(partial)


def run_stage(plan: BuildPlan, stage: Stage, runner: Runner = run) -> dict:
    """Build one stage unless its snapshot exists. Returns its stamp."""
    from . import bootstrap, packages, seal
    impl = {StageKind.bootstrap: bootstrap.make, StageKind.packages: packages.make,
            StageKind.seal: seal.make}[stage.kind]
    if stage_done(plan, stage):
        return read_stamp(plan, stage)
    if stage.parent is not None and not stage_done(plan, stage.parent):
        run_stage(plan, stage.parent, runner)
    with stage_lock(plan, stage):
        # Another build (a recipe sharing this stage) may have made it while we waited.
        if stage_done(plan, stage):
            return read_stamp(plan, stage)
        return _build(plan, stage, impl, runner)


@contextlib.contextmanager
def stage_lock(plan: BuildPlan, stage: Stage):
    """One builder per stage across processes; the kernel drops the lock if its holder dies."""
    plan.paths.stages.mkdir(parents=True, exist_ok=True)
    with open(plan.paths.stages / f"{stage.key[:32]}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build(plan: BuildPlan, stage: Stage, impl, runner: Runner) -> dict:
    recover(plan.paths.ledger, runner)
    plan.paths.stages.mkdir(parents=True, exist_ok=True)
    _clear_partials(plan, stage)
    final = plan.stage_dir(stage)
    partial = final.with_name(f"{final.name}.partial-{os.getpid()}")
    remove_tree(partial)
    partial.mkdir(parents=True)
    started = time.time()
    with log.step(f"{stage.name} [{stage.key[:12]}]") as timing, Ledger(plan.paths.ledger, runner) as ledger:
        extra = impl(plan, stage, partial, ledger, runner) or {}
    # The ledger has unmounted the overlay: its root-owned work/ dir is not part of the snapshot.
    shutil.rmtree(partial / "work", ignore_errors=True)
    remove_tree(final)  # a snapshot without a stamp is incomplete
    os.replace(partial, final)
    stamp = {"stage": stage.name, "kind": stage.kind, "key": stage.key, "recipe": plan.recipe.name,
             "started": started, "seconds": timing["seconds"], "inputs": dict(stage.inputs), **extra}
    tmp = final / ".stamp.tmp"
    tmp.write_text(json.dumps(stamp, indent=2))
    os.replace(tmp, plan.stamp(stage))
    return stamp


def mount_stage_tree(plan: BuildPlan, stage: Stage, ledger: Ledger, name: str) -> Path:
    """Mount the finished tree of `stage` (all its layers) read-only; returns the mount point."""
    merged = plan.paths.work / f"{name}-{os.getpid()}"
    return mount_layers(ledger, [plan.tree(s) for s in stage.ancestry()], merged)


def mount_for_writing(plan: BuildPlan, stage: Stage, partial: Path, ledger: Ledger) -> Path:
    """The tree a layer stage works on: its parents below, its own upper dir on top."""
    upper, work = partial / "tree", partial / "work"
    upper.mkdir()
    work.mkdir()
    merged = plan.paths.work / f"{stage.key[:16]}-{os.getpid()}"
    mount_layers(ledger, [plan.tree(s) for s in stage.parent.ancestry()], merged, upper, work)
    return merged

