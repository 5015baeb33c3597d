"""Hook sets: phases in the chain, name order, variables in the environment, a failing hook
named with its last lines, and its content in the key."""

import contextlib
import json
from pathlib import Path

import pytest

from distonet.errors import BuildError, RecipeError
from distonet.pipeline import hook_facts
from distonet.recipe import load_recipe
from distonet.stages import REGISTRY
from distonet.stages.base import HostFacts, StageContext
from tests.helpers import keys, plan_of, write
from tests.recording import RecordingRunner


def hook_set(paths, name, scripts: dict[str, str]) -> Path:
    d = paths.recipes.parent / "hooks" / "chroot" / name
    for rel, text in scripts.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    return d


def plan_with_hooks(paths, name):
    r = load_recipe(name, paths.search)
    return plan_of(name, paths, hooks=tuple(hook_facts(r, paths)), hook_vars={"site_name": "Lab", "n": [1, 2]})


def test_phases_take_their_place_in_the_chain_and_scripts_run_by_name(paths):
    hook_set(paths, "a", {"post-install/20-second": "#!/bin/sh\n", "post-install/10-first": "#!/bin/sh\n",
                          "finalise/50-last": "#!/bin/sh\n", "pre-install/00-early": "#!/bin/sh\n"})
    hook_set(paths, "b", {"post-install/05-from-b": "#!/bin/sh\n", "outside/90-host": "#!/bin/sh\n"})
    write(paths.recipes, "h", "extends: minimal\nhooks: [a, b]\n")
    plan = plan_with_hooks(paths, "h")
    assert [s.name for s in plan.stages] == ["bootstrap", "hooks.pre-install", "packages.kernel", "packages.base",
                                             "packages.ssh", "hooks.post-install", "hooks.finalise",
                                             "hooks.outside", "seal"]
    post = plan.stage("hooks.post-install").inputs["scripts"]
    assert [(s["set"], s["name"]) for s in post] == [("a", "10-first"), ("a", "20-second"), ("b", "05-from-b")]
    assert plan.stage("hooks.post-install").inputs["env"] == {"DISTONET_SITE_NAME": "Lab", "DISTONET_N": "[1, 2]"}


def test_a_hooks_content_is_in_its_key(paths):
    d = hook_set(paths, "a", {"post-install/10-x": "#!/bin/sh\necho one\n", "finalise/10-y": "#!/bin/sh\n"})
    write(paths.recipes, "h", "extends: minimal\nhooks: [a]\n")
    before = keys(plan_with_hooks(paths, "h"))
    (d / "finalise/10-y").write_text("#!/bin/sh\necho changed\n")
    after = keys(plan_with_hooks(paths, "h"))
    assert [n for n in before if before[n] != after[n]] == ["hooks.finalise", "seal"]


def test_unknown_set_and_phase_are_named(paths):
    hook_set(paths, "lab", {"post-instal/10-x": ""})
    write(paths.recipes, "h", "extends: minimal\nhooks: [lab]\n")
    with pytest.raises(RecipeError, match="unknown hook phase\\(s\\) post-instal"):
        hook_facts(load_recipe("h", paths.search), paths)
    write(paths.recipes, "h2", "extends: minimal\nhooks: [labb]\n")
    with pytest.raises(RecipeError, match="no hook set 'labb' .*did you mean 'lab'"):
        hook_facts(load_recipe("h2", paths.search), paths)


def run_stage(paths, tmp_path, monkeypatch, name, runner):
    plan = plan_with_hooks(paths, "h")
    stage = plan.stage(name)
    tree = tmp_path / "merged"
    (tree / "run").mkdir(parents=True)
    monkeypatch.setattr(StageContext, "mount_for_writing", lambda self: tree)
    monkeypatch.setattr("distonet.stages.hooks.chroot_session", lambda *a, **k: contextlib.nullcontext())
    sources = {f"hooks:{h['set']}": Path(h["dir"]) for h in plan.facts.hooks}
    ctx = StageContext(name, stage.key, stage.inputs, (), tmp_path / "partial",
                       HostFacts(mirror="m", cache=tmp_path, work=tmp_path, sources=sources), None, None, runner)
    return REGISTRY[stage.kind].make(ctx), tree


def test_inside_hooks_run_in_the_chroot_with_the_variables(paths, tmp_path, monkeypatch):
    hook_set(paths, "a", {"post-install/10-users": "#!/bin/sh\nuseradd demo\n"})
    write(paths.recipes, "h", "extends: minimal\nhooks: [a]\n")
    runner = RecordingRunner()
    stamp, tree = run_stage(paths, tmp_path, monkeypatch, "hooks.post-install", runner)
    (argv,) = runner.calls
    assert argv[0] == "unshare" and "chroot" in argv and argv[-1] == "/run/distonet-hooks/a-10-users"
    assert "DISTONET_SITE_NAME=Lab" in argv
    assert (tree / "run/distonet-hooks/a-10-users").read_text() == "#!/bin/sh\nuseradd demo\n"
    assert stamp == {"hooks": ["a/post-install/10-users"]}


def test_outside_hooks_get_the_tree(paths, tmp_path, monkeypatch):
    d = hook_set(paths, "a", {"outside/10-host": "#!/bin/sh\n"})
    write(paths.recipes, "h", "extends: minimal\nhooks: [a]\n")
    runner = RecordingRunner()
    run_stage(paths, tmp_path, monkeypatch, "hooks.outside", runner)
    assert runner.calls == [(str(d / "outside/10-host"), str(tmp_path / "merged"))]


def test_a_failing_hook_is_named_with_its_last_lines(paths, tmp_path, monkeypatch):
    hook_set(paths, "lab", {"finalise/30-break": "#!/bin/sh\nexit 3\n"})
    write(paths.recipes, "h", "extends: minimal\nhooks: [lab]\n")

    def runner(argv, **kw):
        from distonet.errors import CommandError
        e = CommandError("command failed (3): unshare …\nuseradd: group 'lab' does not exist")
        e.returncode = 3
        raise e
    with pytest.raises(BuildError) as exc:
        run_stage(paths, tmp_path, monkeypatch, "hooks.finalise", runner)
    assert str(exc.value) == "hook lab/finalise/30-break failed (exit 3):\nuseradd: group 'lab' does not exist"
