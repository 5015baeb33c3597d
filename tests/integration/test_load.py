"""Load and soak: builds of different recipes sharing stages, all at once, with prune and
publish beside them; and (nightly) twenty builds in a row with random faults injected. After
each: every build succeeded or failed cleanly, and `distonet verify` proves the store and the
outputs sound."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from distonet import PROJECT_ROOT
from distonet.manifest import Manifest
from distonet.paths import Paths
from distonet.publish import LocalShare
from distonet.verify import Report, verify, verify_store
from tests.integration.conftest import distonet, leftovers, plan_for, wait_for
from tests.integration.test_faults import ACTIONS, BUILD_POINTS, faulty_recipe, run

pytestmark = pytest.mark.integration


def start(recipes, *args, **kw):
    """`distonet ARGS` started in the background, as a user's shell does."""
    env = dict(os.environ, DISTONET_RECIPES=str(recipes), **kw.pop("env", {}))
    return subprocess.Popen([sys.executable, "-m", "distonet", *args], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, process_group=0,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.nightly
def test_four_builds_sharing_stages_with_prune_and_publish_beside_them(minimal_build, recipes, tmp_path):
    names = ["load-a", "load-b", "load-c", "load-d"]
    for n in names[:2]:          # a and b share a new package layer: one builds it, the other waits
        (recipes / f"{n}.yaml").write_text(f"extends: minimal\nhostname: {n}\npackages: {{late: [bzip2]}}\n"
                                           "replace: [outputs]\noutputs: {rootfs: {}, kernel: {}}\n")
    for n in names[2:]:          # c and d: their own overlays on minimal's stages
        overlay = recipes.parent / "overlays" / n / "etc"
        overlay.mkdir(parents=True)
        (overlay / "load").write_text(f"{n}\n")
        (recipes / f"{n}.yaml").write_text(f"extends: minimal\nhostname: {n}\noverlays: [{n}]\n"
                                           "replace: [outputs]\noutputs: {rootfs: {}, kernel: {}, qcow2: {}, "
                                           "disk: {}}\n")
    share = tmp_path / "share"
    builds = [start(recipes, "build", n) for n in names]
    beside = [start(recipes, "publish", "minimal", "--share", str(share), "--force")]
    prunes = []
    while any(b.poll() is None for b in builds):        # prune again and again while they run
        prunes.append(distonet("prune", recipes=recipes, check=False))
        time.sleep(2)
    results = [(b, *b.communicate(timeout=900)) for b in builds + beside]
    for proc, out, err in results:
        assert proc.returncode == 0, f"{proc.args}: {err[-3000:]}"
    assert all(p.returncode == 0 for p in prunes), [p.stderr[-500:] for p in prunes if p.returncode]
    for n in names:
        assert Manifest.load(Paths.default().output / n).build_id == plan_for(n, recipes).build_id
    report = verify(Paths.default(), recipes=[*names, "minimal"])
    assert report.sound, report.problems
    published = LocalShare(share)
    assert published.latest("minimal") == Manifest.load(Paths.default().output / "minimal").build_id
    assert leftovers(Paths.default()) == []
    for n in names:
        distonet("clean", n, recipes=recipes)


@pytest.mark.nightly
def test_a_soak_of_twenty_builds_with_random_faults_leaves_a_sound_store(minimal_build, recipes, tmp_path):
    name = "soak"
    rng = random.Random(20261130)               # the same faults each night: a failure reruns as it was
    outcomes = []
    for i in range(20):
        faulty_recipe(recipes, tmp_path, name, f"soak {i}\n")
        fault = None
        if i < 19 and rng.random() < 0.6:
            point, action = rng.choice(BUILD_POINTS).format(name=name), rng.choice(list(ACTIONS))
            fault = f"{point}:{action}"
        proc = run(recipes, "build", name, fault=fault)
        outcomes.append((fault, proc.returncode))
        if fault is None:
            assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        wait_for(lambda: leftovers(Paths.default()) == [], 60, f"build {i}'s leftovers to vanish")
    assert outcomes[-1][1] == 0, outcomes
    assert Manifest.load(Paths.default().output / name).build_id == plan_for(name, recipes).build_id
    report = Report()
    verify_store(Paths.default(), report)                       # every stage of the store
    soak = verify(Paths.default(), recipes=[name])             # and the soak's build
    assert report.sound and soak.sound, report.problems + soak.problems
    distonet("clean", name, recipes=recipes)
