"""Interrupted and concurrent builds: SIGKILL, SIGTERM and Ctrl-C mid-stage, prune while a
build runs, two builds of one recipe at once. After each: nothing mounted in any namespace, no
process in our trees, no partial directory, no half-written output, and the next build completes."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from distonet import PROJECT_ROOT
from distonet.manifest import Manifest
from distonet.store import StageStore
from tests.integration.conftest import distonet, leftovers, plan_for, wait_for

pytestmark = pytest.mark.integration


def ledger_entries(paths) -> list[dict]:
    entries = []
    for f in paths.ledger.glob("*.json"):
        try:
            entries += json.loads(f.read_text())["entries"]
        except (OSError, ValueError):
            pass
    return entries


def start_build(recipes, *names) -> subprocess.Popen:
    """`distonet build` as a user's shell starts it: the leader of its own process group, with
    SIGINT at its default (a background job of a non-interactive shell would ignore it)."""
    env = dict(os.environ, DISTONET_RECIPES=str(recipes))
    return subprocess.Popen([sys.executable, "-m", "distonet", "build", *names], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, process_group=0,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def in_package_stage(paths) -> bool:
    """The layer is being installed once its chroot has devpts mounted (the ledger says so)."""
    return any(e.get("target", "").endswith("/dev/pts") for e in ledger_entries(paths))


@pytest.mark.parametrize("sig,code", [(signal.SIGKILL, -9), (signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["sigkill", "sigterm", "ctrl-c"])
def test_a_signal_mid_stage_leaves_nothing_and_the_next_build_completes(minimal_plan, recipes, sig, code):
    name = f"killed-{sig.name.lower()}"
    (recipes / f"{name}.yaml").write_text(
        f"extends: minimal\nhostname: {name}\npackages: {{slow: [python3]}}\nreplace: [outputs]\noutputs: {{kernel: {{}}}}\n")
    plan = plan_for(name, recipes)
    stage = plan.stage("packages.slow")
    proc = start_build(recipes, name)
    try:
        wait_for(lambda: in_package_stage(plan.paths), 600, "the package stage")
        time.sleep(1.0)
    finally:
        os.killpg(proc.pid, sig)  # the whole foreground group, as a terminal's Ctrl-C does
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-3000:]
    if sig != signal.SIGKILL:
        assert "distonet: interrupted by" in err and "Traceback" not in err
        # Undone in this run already: no partial directory, no ledger record.
        assert not list(plan.paths.stages.glob(f"{stage.key[:32]}.partial-*"))
    assert not StageStore(plan.paths.stages).done(stage.key)
    wait_for(lambda: leftovers(plan.paths) == [], 60, "the interrupted build's leftovers to vanish")

    distonet("build", name, recipes=recipes)
    assert StageStore(plan.paths.stages).done(stage.key)
    assert leftovers(plan.paths) == []
    assert not list(plan.paths.stages.glob("*.partial-*"))
    assert not list(plan.paths.ledger.glob("*.json"))
    distonet("clean", name, recipes=recipes)
    assert not plan.out_dir.exists() and not StageStore(plan.paths.stages).dir(stage.key).exists()
    assert StageStore(plan.paths.stages).done(minimal_plan.stages[0].key)  # minimal still uses it


def test_prune_while_a_build_runs_removes_nothing_it_uses(minimal_plan, recipes):
    (recipes / "pruned.yaml").write_text(
        "extends: minimal\nhostname: pruned\npackages: {late: [bzip2]}\nreplace: [outputs]\noutputs: {rootfs: {}}\n")
    plan = plan_for("pruned", recipes)
    store = StageStore(plan.paths.stages)
    proc = start_build(recipes, "pruned")
    try:
        # Prune once the new seal exists and the outputs are being made: no manifest names it yet.
        wait_for(lambda: store.done(plan.sealed.key), 600, "the seal stage")
        pruned = distonet("prune", recipes=recipes)
        assert plan.sealed.key[:32] not in "".join(l for l in pruned.stdout.splitlines() if "removed " in l)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert Manifest.load(plan.out_dir).build_id == plan.build_id
    assert all(store.done(s.key) for s in plan.stages)
    distonet("clean", "pruned", recipes=recipes)


def test_two_builds_of_one_recipe_at_once(minimal_plan, recipes):
    (recipes / "twin.yaml").write_text(
        "extends: minimal\nhostname: twin\npackages: {t: [bzip2]}\nreplace: [outputs]\noutputs: {disk: {}}\n")
    plan = plan_for("twin", recipes)
    a, b = start_build(recipes, "twin"), start_build(recipes, "twin")
    (_, err_a), (_, err_b) = a.communicate(timeout=900), b.communicate(timeout=900)
    assert a.returncode == 0 and b.returncode == 0, err_a[-2000:] + err_b[-2000:]
    assert "waiting: " in err_a + err_b  # one said it waited for the other
    m = Manifest.load(plan.out_dir)
    assert m.build_id == plan.build_id
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=plan.out_dir, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    assert not (plan.paths.output / ".twin.next").exists()  # the winner's commit took it
    distonet("clean", "twin", recipes=recipes)
