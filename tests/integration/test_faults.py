"""Fault injection (DISTONET_FAULT) through every named point of a build and a publish: SIGKILL,
SIGTERM, Ctrl-C and an error at each. After each: nothing mounted in any namespace, no loop
device, no process inside our trees, no partial stage, no half-written artifact, the previous
build (if any) still whole, `distonet verify` sound; and the next run completes.

CI drives one action per point (rotating); the nightly job drives every action at every point."""

import itertools
import os
import signal
import subprocess
import sys

import pytest

from distonet import PROJECT_ROOT
from distonet.manifest import Manifest
from distonet.paths import Paths
from distonet.publish import PARTIAL, LocalShare
from distonet.verify import verify
from tests.integration.conftest import distonet, leftovers, plan_for, wait_for

pytestmark = pytest.mark.integration

ACTIONS = {"kill": -signal.SIGKILL, "term": 143, "int": 130, "fail": 1}

BUILD_POINTS = ["stage:overlay.f:begin", "stage:overlay.f:made", "stage:overlay.f:renamed",
                "stage:overlay.f:committed", "stage:seal:made", "command:mkfs.ext4", "output:rootfs:made",
                "output:qcow2:begin", "command:qemu-img", "commit:{name}:swap", "commit:{name}:done"]
PUBLISH_POINTS = ["publish:{name}:copied", "publish:{name}:rename", "publish:{name}:committed"]


def cases(points, every: bool):
    """(point, action) pairs: all of them nightly; in CI each point once, the actions in turn."""
    if every:
        return [pytest.param(p, a, marks=pytest.mark.nightly, id=f"{p}-{a}")
                for p, a in itertools.product(points, ACTIONS)]
    return [pytest.param(p, a, id=f"{p}-{a}") for p, a in zip(points, itertools.cycle(ACTIONS))]


def run(recipes, *args, fault: str | None = None, timeout=900) -> subprocess.CompletedProcess:
    """`distonet ARGS` as a user's shell starts it (its own process group, SIGINT at its default)."""
    env = dict(os.environ, DISTONET_RECIPES=str(recipes))
    if fault:
        env["DISTONET_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "distonet", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, process_group=0,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def faulty_recipe(recipes, tmp_path, name: str, content: str) -> None:
    """minimal with one overlay file (a cheap stage of its own) and three image outputs."""
    overlay = recipes.parent / "overlays" / "f"          # found beside the recipes directory
    (overlay / "etc").mkdir(parents=True, exist_ok=True)
    (overlay / "etc/fault-marker").write_text(content)
    (recipes / f"{name}.yaml").write_text(
        f"extends: minimal\nhostname: {name}\noverlays: [f]\n"
        "replace: [outputs]\noutputs: {rootfs: {}, kernel: {}, disk: {}, qcow2: {}}\n")


def assert_sound_after(recipes, name: str, code: int, expected: int, err: str) -> None:
    assert code == expected, f"exit {code}, wanted {expected}:\n{err[-3000:]}"
    if expected not in (-signal.SIGKILL,):
        assert "Traceback" not in err, err[-3000:]
    paths = Paths.default()
    wait_for(lambda: leftovers(paths) == [], 60, "the interrupted build's leftovers to vanish")
    current = paths.output / name
    if (current / "manifest.json").exists():       # the last complete build stands, whole
        r = verify(paths, recipes=[name])
        assert r.sound, r.problems
    assert not [p for p in current.glob("*") if ".tmp" in p.name or p.name.endswith(".part")]


@pytest.mark.parametrize("point,action", cases(BUILD_POINTS, every=False) + cases(BUILD_POINTS, every=True))
def test_a_build_faulted_at_a_point_leaves_nothing_and_the_next_completes(minimal_plan, recipes, tmp_path,
                                                                           point, action):
    name = "faulted"
    faulty_recipe(recipes, tmp_path, name, f"{point} {action}\n")
    plan = plan_for(name, recipes)
    proc = run(recipes, "build", name, fault=f"{point.format(name=name)}:{action}")
    assert_sound_after(recipes, name, proc.returncode, ACTIONS[action], proc.stderr)
    if action == "fail":
        assert "fault injected at" in proc.stderr
    assert not list(plan.paths.stages.glob(f"{plan.stage('overlay.f').key[:32]}.partial-*")) \
        or action == "kill"                          # a SIGKILLed build's partial: cleared next run

    again = run(recipes, "build", name)
    assert again.returncode == 0, again.stderr[-3000:]
    assert Manifest.load(plan.out_dir).build_id == plan.build_id
    assert not list(plan.paths.stages.glob("*.partial-*"))
    r = verify(Paths.default(), recipes=[name])
    assert r.sound and r.checked, r.problems
    assert leftovers(Paths.default()) == []
    distonet("clean", name, recipes=recipes)


@pytest.mark.parametrize("point,action", cases(PUBLISH_POINTS, every=False) + cases(PUBLISH_POINTS, every=True))
def test_a_publish_faulted_at_a_point_leaves_the_share_whole(minimal_plan, recipes, tmp_path, point, action):
    name = "faultpub"
    faulty_recipe(recipes, tmp_path, name, "publish\n")
    plan = plan_for(name, recipes)
    built = run(recipes, "build", name)
    assert built.returncode == 0, built.stderr[-3000:]
    share = tmp_path / "share"
    proc = run(recipes, "publish", name, "--share", str(share), "--force",
               fault=f"{point.format(name=name)}:{action}")
    # (an error outside doit exits with distonet's own code for it: 5, a build error)
    assert_sound_after(recipes, name, proc.returncode, 5 if action == "fail" else ACTIONS[action], proc.stderr)
    s = LocalShare(share)
    # Either nothing is published, or the build is there whole; `latest` names a whole build or nothing.
    for build_id in s.builds(name):
        from distonet.publish import verify as verify_published
        verify_published(share / name / build_id, Manifest.load(share / name / build_id))
    if s.latest(name):
        assert s.latest(name) in s.builds(name)

    again = run(recipes, "publish", name, "--share", str(share), "--force")
    assert again.returncode == 0, again.stderr[-3000:]
    assert s.latest(name) == plan.build_id and s.builds(name) == [plan.build_id]
    assert not [p for p in (share / name).iterdir() if p.name.startswith(PARTIAL)]   # the resumed copy went in
    distonet("clean", name, recipes=recipes)
