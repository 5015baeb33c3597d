"""BuildPlan → doit task dicts. Translation only: no building happens here.

Task names carry the recipe (bootstrap:minimal, seal:minimal, disk:minimal), so one recipe's
state never hides another's. A stage's target is its stamp, which lives in a directory named by
the stage's key: a changed key is a missing target, so doit reruns exactly what changed.
"""

from __future__ import annotations

import sys
import time

from . import build
from .errors import BootError, DistonetError
from .outputs import REGISTRY as OUTPUTS
from .plan import BuildPlan
from .stages import stage_done

DEFAULT_RECIPE = "minimal"

DOIT_CONFIG = {
    "default_tasks": ["build"],
    "backend": "sqlite3",
    "dep_file": ".doit.db",
    "verbosity": 2,
    "action_string_formatting": "new",
}


def _guard(fn, *args):
    """The boundary: a DistonetError becomes one clear message and a failed task, not a traceback."""
    def action():
        try:
            result = fn(*args)
        except DistonetError as exc:
            print(f"distonet: error: {exc}", file=sys.stderr)
            return False
        return result if isinstance(result, dict) else None  # a dict becomes the task's values
    action.__name__ = getattr(fn, "__name__", "action")
    action.__doc__ = fn.__doc__
    return action


class Check:
    """An uptodate callable that says what it checks in `doit info`."""

    def __init__(self, what: str, fn):
        self.what, self.fn = what, fn

    def __call__(self) -> bool:
        return bool(self.fn())

    def __repr__(self) -> str:
        return self.what


def make_tasks(plan: BuildPlan, since: float | None = None):
    since = since if since is not None else time.time()
    r = plan.recipe.name
    for stage in plan.stages:
        yield {
            "basename": stage.name, "name": r,
            "doc": f"{stage.kind} stage [{stage.key[:12]}]",
            "actions": [_guard(build.build_stage, plan, stage.name)],
            "targets": [str(plan.stamp(stage))],
            "uptodate": [Check(f"snapshot {stage.key[:12]} and its parents are complete",
                               lambda s=stage: stage_done(plan, s))],
            "task_dep": [f"{stage.parent.name}:{r}"] if stage.parent else [],
            "verbosity": 2,
        }
    for step in plan.outputs:
        files = OUTPUTS[step.name](plan, step.options).files()
        yield {
            "basename": step.name, "name": r,
            "doc": f"output {', '.join(files)}",
            "actions": [_guard(build.build_output, plan, step.name)],
            "targets": [str(plan.out_dir / f) for f in files],
            "uptodate": [Check(f"{step.name} was made for key {step.key[:12]}",
                               lambda n=step.name: build.output_current(plan, n))],
            "task_dep": [f"{plan.sealed.name}:{r}", *(f"{n}:{r}" for n in step.needs)],
            "verbosity": 2,
        }
    yield {
        "basename": "manifest", "name": r,
        "doc": "manifest.json: artifacts, packages, timings",
        "actions": [_guard(build.write_build_manifest, plan)],
        "targets": [str(plan.out_dir / "manifest.json")],
        "uptodate": [Check(f"manifest is for build {build.manifest_key(plan)}",
                           lambda: build.manifest_current(plan))],
        "task_dep": [f"{o.name}:{r}" for o in plan.outputs],
    }
    yield {
        "basename": "build",
        "doc": f"build recipe={r} into {plan.out_dir}",
        "actions": [lambda: print(build.summary(plan, since), file=sys.stderr)],
        "task_dep": [f"manifest:{r}"],
        "clean": [_guard(build.clean, plan)],
        "verbosity": 2,
    }
    yield {
        "basename": "boot",
        "doc": f"boot recipe={r}'s disk under QEMU with each firmware; report login and seconds",
        "actions": [_guard(_boot, plan)],
        "task_dep": [f"manifest:{r}"],
        "verbosity": 2,
    }


def _boot(plan: BuildPlan):
    from .boot.qemu import boot_recipe
    results = boot_recipe(plan)
    if not all(r.reached for r in results):
        raise BootError("the marker did not reach the serial console: "
                        + "; ".join(r.line() for r in results if not r.reached),
                        hint=f"read the console logs in {plan.out_dir / 'boot'}")


def load_tasks(recipe: str | None):
    """For dodo.py: the plan for `recipe`, or a clean exit with the recipe error."""
    try:
        plan = build.load_plan(recipe or DEFAULT_RECIPE)
    except DistonetError as exc:
        print(f"distonet: error: {exc}", file=sys.stderr)
        raise SystemExit(2)
    return make_tasks(plan)
