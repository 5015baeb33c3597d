"""A kept plan stands in for planning only while nothing planning read has changed."""

import os
import subprocess
import sys

import pytest

from distonet import plancache
from distonet.errors import BuildError
from distonet.host import apt
from distonet.tasks import make_tasks
from tests.helpers import plan_of, write

NAMES = ["minimal"]


def plan_and_keep(paths, monkeypatch, state="S1", extra=None):
    """Plan `minimal` the way load_tasks does: reading the recipe (and `extra`), asking for the
    archive state (stubbed), under a recording; then keep it."""
    monkeypatch.setattr(apt, "archive_state", lambda sources, cache, timeout=10: _state(sources, state))
    with plancache.recording(paths) as rec:
        plan = plan_of("minimal", paths)
        apt.archive_state([("http://mirror.invalid/debian", "trixie")], paths.cache)
        if extra is not None:
            extra.read_text()
    plancache.save(NAMES, paths, [plan], rec)
    return plan, rec


def _state(sources, state):
    for w in apt.WATCHERS:              # as the real one reports itself
        w.append([[list(s) for s in sources], state])
    return state


@pytest.fixture
def env(monkeypatch, paths):
    monkeypatch.delenv("DISTONET_RECIPES", raising=False)
    return paths


def test_a_kept_plan_gives_the_same_tasks_and_checks(env, monkeypatch):
    plan, rec = plan_and_keep(env, monkeypatch)
    assert str(env.recipes / "minimal.yaml") in rec.seen
    kept = plancache.load(NAMES, env)
    assert kept is not None and isinstance(kept[0], plancache.PlanSummary)

    def shape(p):
        return [(t["basename"], t["name"], t["doc"], t.get("task_dep"), repr(t.get("uptodate")))
                for t in make_tasks(p)]
    assert shape(kept[0]) == shape(plan)
    assert kept[0].build_id == plan.build_id and kept[0].out_dir == plan.out_dir
    assert [s.key for s in kept[0].sealed.ancestry()] == [s.key for s in plan.sealed.ancestry()]


def test_a_changed_recipe_even_with_its_old_mtime_is_planned_again(env, monkeypatch):
    plan_and_keep(env, monkeypatch)
    recipe = env.recipes / "minimal.yaml"
    st = recipe.stat()
    recipe.write_text(recipe.read_text() + "\n# changed\n")
    os.utime(recipe, ns=(st.st_atime_ns, st.st_mtime_ns))     # as `cp -p` or tar would
    assert plancache.load(NAMES, env) is None


def test_a_new_file_in_a_searched_directory_is_planned_again(env, monkeypatch):
    plan_and_keep(env, monkeypatch)
    assert plancache.load(NAMES, env) is not None
    (env.recipes.parent / "overlays").mkdir()               # looked for by name, never opened
    assert plancache.load(NAMES, env) is None


def test_a_changed_overlay_file_is_planned_again(env, monkeypatch, tmp_path):
    extra = tmp_path / "motd"
    extra.write_text("a\n")
    plan_and_keep(env, monkeypatch, extra=extra)
    assert plancache.load(NAMES, env) is not None
    extra.write_text("b\n")
    assert plancache.load(NAMES, env) is None


def test_a_moved_archive_is_planned_again(env, monkeypatch):
    plan_and_keep(env, monkeypatch, state="S1")
    assert plancache.load(NAMES, env) is not None
    monkeypatch.setattr(apt, "archive_state", lambda sources, cache, timeout=10: "S2")
    assert plancache.load(NAMES, env) is None


def test_other_names_or_environment_find_nothing(env, monkeypatch):
    plan_and_keep(env, monkeypatch)
    assert plancache.load(["minimal", "vm"], env) is None
    monkeypatch.setenv("DISTONET_SITE", "lab")
    assert plancache.load(NAMES, env) is None


def test_changed_code_is_planned_again(env, monkeypatch):
    plan_and_keep(env, monkeypatch)
    monkeypatch.setattr(plancache, "_code", lambda: "other")
    assert plancache.load(NAMES, env) is None


def test_planning_that_ran_a_program_is_not_kept(env, monkeypatch):
    with plancache.recording(env) as rec:
        plan = plan_of("minimal", env)
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert rec.ran is not None
    plancache.save(NAMES, env, [plan], rec)
    assert plancache.load(NAMES, env) is None


def test_writes_and_the_cache_are_not_inputs(env, monkeypatch, tmp_path):
    with plancache.recording(env) as rec:
        (tmp_path / "written").write_text("x")
        env.cache.mkdir(parents=True, exist_ok=True)
        (env.cache / "copy").write_text("x")
        (env.cache / "copy").read_text()
    assert not any(p.startswith((str(tmp_path / "written"), str(env.cache))) for p in rec.seen)


def test_a_full_plan_with_other_keys_drops_the_kept_one(env, monkeypatch):
    plan_and_keep(env, monkeypatch)
    kept = plancache.load(NAMES, env)[0]
    other = plan_of("minimal", env, archive="B")
    import distonet.pipeline as pipeline
    monkeypatch.setattr(pipeline, "load_plan", lambda name, paths=None, offline_ok=False: other)
    with pytest.raises(BuildError, match="inputs changed"):
        kept.full()
    assert plancache.load(NAMES, env) is None
    same = plan_of("minimal", env)
    monkeypatch.setattr(pipeline, "load_plan", lambda name, paths=None, offline_ok=False: same)
    assert plancache.full(plancache.PlanSummary(plancache.summarize(same, "minimal"), env, kept._kept)) is same


def test_an_extending_recipe_keeps_its_parent_as_an_input(env, monkeypatch):
    write(env.recipes, "lab", "extends: minimal\npackages: {tools: [tree]}\n")
    monkeypatch.setattr(apt, "archive_state", lambda sources, cache, timeout=10: _state(sources, "S"))
    with plancache.recording(env) as rec:
        plan = plan_of("lab", env)
    plancache.save(["lab"], env, [plan], rec)
    assert plancache.load(["lab"], env) is not None
    parent = env.recipes / "minimal.yaml"
    parent.write_text(parent.read_text() + "\n")
    assert plancache.load(["lab"], env) is None
