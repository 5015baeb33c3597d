"""Stage sharing, late-layer changes, a SIGKILLed build, clean, and the previous stable."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from distonet import PROJECT_ROOT
from distonet.build import load_plan
from distonet.paths import Paths
from tests.integration.conftest import doit, leftovers

pytestmark = pytest.mark.integration


def plan_for(name, recipes):
    paths = Paths.default()
    return load_plan(name, Paths(recipes=recipes, cache=paths.cache, output=paths.output))


def du(path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout.split()[0])


def test_extending_recipe_reuses_parent_stages_and_late_change_keeps_bootstrap(minimal_plan, recipes):
    (recipes / "extra.yaml").write_text(
        "extends: minimal\nhostname: extra\npackages: {extra: [file]}\nreplace: [outputs]\noutputs: {rootfs: {}}\n")
    shared = minimal_plan.stages[:-1]
    before = {s.name: minimal_plan.stamp(s).stat().st_mtime_ns for s in shared}
    doit("build", "recipe=extra", recipes=recipes)
    plan = plan_for("extra", recipes)
    for s in shared:  # same snapshot directory, not rebuilt, not copied
        assert plan.stage_dir(plan.stage(s.name)) == minimal_plan.stage_dir(s)
        assert minimal_plan.stamp(s).stat().st_mtime_ns == before[s.name]
    layer = plan.stage("packages.extra")
    assert du(plan.stage_dir(layer)) < du(minimal_plan.stage_dir(minimal_plan.stages[0])) / 5

    (recipes / "extra.yaml").write_text(
        "extends: minimal\nhostname: extra\npackages: {extra: [file, bzip2]}\nreplace: [outputs]\noutputs: {rootfs: {}}\n")
    load_plan.cache_clear()
    proc = doit("build", "recipe=extra", recipes=recipes)
    plan2 = plan_for("extra", recipes)
    assert plan2.stage("packages.extra").key != layer.key
    for s in shared:
        assert minimal_plan.stamp(s).stat().st_mtime_ns == before[s.name]
    summary = {line.split()[0]: line.split()[-1] for line in proc.stderr.splitlines()
               if line.split() and line.split()[-1] in ("run", "cached")}
    assert summary["bootstrap"] == "cached" and summary["packages.extra"] == "run"


def wait_for(predicate, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def ledger_entries(paths) -> list[dict]:
    entries = []
    for f in paths.ledger.glob("*.json"):
        try:
            entries += json.loads(f.read_text())["entries"]
        except (OSError, ValueError):
            pass
    return entries


def test_sigkill_during_a_package_stage_leaves_nothing_and_next_build_completes(minimal_plan, recipes):
    (recipes / "killed.yaml").write_text(
        "extends: minimal\nhostname: killed\npackages: {slow: [python3]}\nreplace: [outputs]\noutputs: {rootfs: {}}\n")
    plan = plan_for("killed", recipes)
    stage = plan.stage("packages.slow")
    env = dict(os.environ, DISTONET_RECIPES=str(recipes))
    proc = subprocess.Popen([sys.executable, "-m", "doit", "build", "recipe=killed"], cwd=PROJECT_ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # The layer is being installed once its chroot has devpts mounted (the ledger says so).
        wait_for(lambda: any(e.get("target", "").endswith("/dev/pts") for e in ledger_entries(plan.paths)),
                 600, "the package stage")
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert any(e["kind"] == "mount" for e in ledger_entries(plan.paths)), "killed mid-stage"
    assert not plan.stamp(stage).exists()
    # The build's mounts lived in its private mount namespace: none is visible on the host, and its
    # children died with it (parent-death signal). Give the kernel a moment to reap them.
    wait_for(lambda: leftovers(plan.paths) == [], 60, "the killed build's leftovers to vanish")

    doit("build", "recipe=killed", recipes=recipes)
    assert plan.stamp(stage).is_file()
    assert leftovers(plan.paths) == []
    assert not list(plan.paths.stages.glob("*.partial-*"))
    assert not list(plan.paths.ledger.glob("*.json"))

    # clean: unmounts first, removes the recipe's outputs and the stages only it used.
    doit("clean", "recipe=killed", recipes=recipes)
    assert not plan.out_dir.exists()
    assert not plan.stage_dir(stage).exists()
    assert minimal_plan.stamp(minimal_plan.stages[0]).is_file()  # minimal still uses it


def test_previous_stable_builds_by_changing_one_key_and_boots(minimal_plan, recipes):
    (recipes / "bookworm.yaml").write_text("extends: minimal\ndistribution: {suite: bookworm}\n")
    doit("build", "recipe=bookworm", recipes=recipes)
    plan = plan_for("bookworm", recipes)
    data = (plan.out_dir / "manifest.json").read_text()
    assert '"suite": "bookworm"' in data
    from distonet.boot.qemu import boot_disk
    result = boot_disk(plan.out_dir / "disk.raw", "bios", kernel=plan.out_dir / "vmlinuz", name="bookworm/bios")
    assert result.reached, result.console[-3000:]
    assert "Debian GNU/Linux 12" in result.console
