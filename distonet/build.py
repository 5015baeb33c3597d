"""What doit's actions call: one function per step, each reading the plan, none deciding order.
(The order is the plan's; the graph is doit's.)"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

from . import log
from .chroot import assert_no_mounts_below
from .hostapt import archive_state, default_mirror
from .ledger import Ledger, recover
from .manifest import Artifact, artifact_dicts, write_atomic, write_manifest
from .outputs import REGISTRY as OUTPUTS
from .namespace import enter_private_mounts
from .paths import Paths
from .plan import BuildPlan, make_plan
from .recipe import load_recipe
from .run import check_tools, run
from .stages import mount_stage_tree, read_stamp, remove_tree, run_stage, stage_done

HOST_TOOLS = ["mount", "umount", "chroot", "mkfs.ext4", "mkfs.fat", "mmd", "mcopy", "sfdisk",
              "grub-mkimage", "qemu-img", "dpkg-query", "usermod", "dd"]


@functools.lru_cache(maxsize=None)
def load_plan(recipe_name: str, paths: Paths | None = None) -> BuildPlan:
    """Validate the recipe (before any work), resolve the mirror and the archive state."""
    paths = paths or Paths.default()
    recipe = load_recipe(recipe_name, paths.recipes)
    mirror = (recipe.distribution.mirror or default_mirror()).rstrip("/")
    archive = archive_state(mirror, recipe.distribution.suite, paths.cache)
    return make_plan(recipe, paths, mirror=mirror, archive=archive)


def state_file(plan: BuildPlan, output: str) -> Path:
    return plan.out_dir / ".state" / f"{output}.json"


def output_current(plan: BuildPlan, output: str) -> bool:
    step = plan.output(output)
    try:
        state = json.loads(state_file(plan, output).read_text())
    except (OSError, ValueError):
        return False
    cls = OUTPUTS[output]
    return state.get("key") == step.key and all((plan.out_dir / f).is_file() for f in cls(plan, step.options).files())


def build_stage(plan: BuildPlan, stage_name: str) -> dict:
    check_tools(HOST_TOOLS + [str(plan.recipe.distribution.bootstrap)])
    enter_private_mounts()
    return run_stage(plan, plan.stage(stage_name))


def build_output(plan: BuildPlan, output: str, runner=run) -> list[Artifact]:
    step = plan.output(output)
    out = plan.out_dir
    (out / ".state").mkdir(parents=True, exist_ok=True)
    enter_private_mounts()
    recover(plan.paths.ledger, runner)
    started = time.time()
    with log.step(f"{output} → {out}") as timing, Ledger(plan.paths.ledger, runner) as ledger:
        tree = mount_stage_tree(plan, plan.sealed, ledger, f"out-{output}")
        artifacts = OUTPUTS[output](plan, step.options).make(tree, ledger, runner)
    write_atomic(state_file(plan, output), json.dumps({
        "key": step.key, "started": started, "seconds": timing["seconds"],
        "artifacts": artifact_dicts(artifacts)}, indent=2))
    return artifacts


def manifest_key(plan: BuildPlan) -> str:
    return plan.sealed.key[:16] + "-" + "-".join(o.key[:8] for o in plan.outputs)


def manifest_current(plan: BuildPlan) -> bool:
    try:
        return json.loads((plan.out_dir / "manifest.json").read_text())["build_id"] == manifest_key(plan)
    except (OSError, ValueError, KeyError):
        return False


def write_build_manifest(plan: BuildPlan) -> Path:
    out = plan.out_dir
    stages = [dict(read_stamp(plan, s)) for s in plan.stages]
    outputs = [json.loads(state_file(plan, o.name).read_text()) for o in plan.outputs]
    seal = stages[-1]
    data = {
        "recipe": plan.recipe.name,
        "build_id": manifest_key(plan),
        "resolved_recipe": plan.recipe.resolved(),
        "mirror": plan.mirror,
        "archive_state": plan.archive,
        "stages": [{"name": s["stage"], "key": s["key"], "seconds": s["seconds"]} for s in stages],
        "outputs": [{"name": o.name, "seconds": st["seconds"]} for o, st in zip(plan.outputs, outputs)],
        "packages": seal.get("packages", []),
        "artifacts": [a for st in outputs for a in st["artifacts"]],
    }
    path = out / "manifest.json"
    write_manifest(path, data)
    return path


def summary(plan: BuildPlan, since: float) -> str:
    rows = []
    for s in plan.stages:
        st = read_stamp(plan, s) if stage_done(plan, s) else {}
        rows.append((s.name, st.get("seconds"), "run" if st.get("started", 0) >= since else "cached"))
    for o in plan.outputs:
        try:
            st = json.loads(state_file(plan, o.name).read_text())
        except (OSError, ValueError):
            st = {}
        rows.append((f"output {o.name}", st.get("seconds"), "run" if st.get("started", 0) >= since else "cached"))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'stage'.ljust(width)}  {'seconds':>8}  state", "-" * (width + 17)]
    for name, secs, state in rows:
        lines.append(f"{name.ljust(width)}  {secs if secs is not None else '-':>8}  {state}")
    return "\n".join(lines)


def stages_in_use(paths: Paths, skip: str | None = None) -> set[str]:
    """Stage keys that the manifests in output/ (except recipe `skip`'s) were built from."""
    keys = set()
    for manifest in paths.output.glob("*/manifest.json"):
        if manifest.parent.name != skip:
            try:
                keys |= {s["key"][:32] for s in json.loads(manifest.read_text())["stages"]}
            except (OSError, ValueError, KeyError):
                pass
    return keys


def prune(paths: Paths, runner=run) -> list[Path]:
    """Remove the stage snapshots no manifest in output/ uses (old archive states, old layers)."""
    recover(paths.ledger, runner)
    keep = stages_in_use(paths)
    removed = []
    for d in sorted(paths.stages.glob("*")) if paths.stages.is_dir() else []:
        name = d.name.split(".", 1)[0]
        if name in keep:
            continue
        if ".partial-" in d.name and Path(f"/proc/{d.name.rsplit('-', 1)[1]}").exists():
            continue  # a live build is making it
        if d.suffix == ".lock":
            continue
        remove_tree(d)
        removed.append(d)
    return removed


def clean(plan: BuildPlan, runner=run) -> None:
    """Unmount first (anything a dead build left), then delete the recipe's outputs and the
    stage snapshots no other recipe's manifest still uses."""
    recover(plan.paths.ledger, runner)
    keep = stages_in_use(plan.paths, skip=plan.recipe.name)
    remove_tree(plan.out_dir)
    for stage in plan.stages:
        if stage.key[:32] not in keep:
            remove_tree(plan.stage_dir(stage))
            for partial in plan.paths.stages.glob(plan.stage_dir(stage).name + ".partial-*"):
                remove_tree(partial)
    if plan.paths.work.is_dir():
        assert_no_mounts_below(plan.paths.work)
    log.info(f"clean: removed {plan.out_dir} and {plan.recipe.name}'s unshared stages")
