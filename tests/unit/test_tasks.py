"""The doit graph: names carry the recipe, stages chain, outputs follow seal and their needs."""

from distonet.store import StageStore
from distonet.tasks import make_tasks, split_names
from tests.helpers import plan_of, write


def tasks_of(paths, name="minimal"):
    plan = plan_of(name, paths)
    return plan, {f"{t['basename']}:{t['name']}": t for t in make_tasks(plan)}


def test_task_names_carry_the_recipe(paths):
    _, tasks = tasks_of(paths)
    assert set(tasks) == {f"{n}:minimal" for n in (
        "bootstrap", "packages.kernel", "packages.base", "packages.ssh", "seal", "rootfs", "kernel",
        "disk", "qcow2", "sbom", "manifest", "build", "boot", "publish", "nightly")}


def test_stage_chain_and_uptodate_follows_the_stamps(paths):
    plan, tasks = tasks_of(paths)
    store = StageStore(paths.stages)
    assert tasks["bootstrap:minimal"]["task_dep"] == []
    assert tasks["packages.kernel:minimal"]["task_dep"] == ["bootstrap:minimal"]
    assert tasks["seal:minimal"]["task_dep"] == ["packages.ssh:minimal"]
    for stage in plan.stages:
        t = tasks[f"{stage.name}:minimal"]
        assert "targets" not in t  # recipes sharing a stage would share the target: doit refuses
        assert t["uptodate"][0]() is False  # nothing built in a fresh cache
    for stage in plan.stages:  # stamps appear, parent first
        assert tasks[f"{stage.name}:minimal"]["uptodate"][0]() is False
        partial = store.begin(stage.key)
        store.commit(stage.key, partial, {})
        assert tasks[f"{stage.name}:minimal"]["uptodate"][0]() is True
    import shutil
    shutil.rmtree(store.dir(plan.stages[1].key))  # a pruned parent invalidates its children
    assert tasks["seal:minimal"]["uptodate"][0]() is False


def test_outputs_depend_on_seal_and_their_needs(paths):
    _, tasks = tasks_of(paths)
    assert tasks["rootfs:minimal"]["task_dep"] == ["seal:minimal"]
    assert tasks["disk:minimal"]["task_dep"] == ["seal:minimal", "rootfs:minimal"]
    assert tasks["qcow2:minimal"]["task_dep"] == ["seal:minimal", "disk:minimal"]
    assert set(tasks["manifest:minimal"]["task_dep"]) == {"rootfs:minimal", "kernel:minimal", "disk:minimal",
                                                          "qcow2:minimal", "sbom:minimal"}
    assert tasks["build:minimal"]["task_dep"] == ["manifest:minimal"]
    assert tasks["build:minimal"]["clean"]
    assert tasks["boot:minimal"]["task_dep"] == ["manifest:minimal"]
    assert tasks["disk:minimal"]["uptodate"][0]() is False


def test_two_recipes_share_one_graph_without_name_clashes(paths):
    from distonet.tasks import load_tasks
    import distonet.pipeline as pipeline
    write(paths.recipes, "lab", "extends: minimal\npackages: {tools: [tree]}\n")
    plans = {n: plan_of(n, paths) for n in ("minimal", "lab")}
    orig = pipeline.load_plans
    try:
        pipeline.load_plans = lambda names, paths=None, offline_ok=False: [plans[n] for n in names]
        tasks = load_tasks(["minimal", "lab"], kept=False)
    finally:
        pipeline.load_plans = orig
    names = [f"{t['basename']}:{t['name']}" if t["name"] else t["basename"] for t in tasks]
    assert len(names) == len(set(names))
    assert {"bootstrap:minimal", "bootstrap:lab", "packages.tools:lab", "build:minimal", "build:lab", "build"} <= set(names)
    groups = [t for t in tasks if t["name"] is None]
    assert tasks[: len(groups)] == groups  # group definitions come first, as doit wants
    assert plans["minimal"].stages[0].key == plans["lab"].stages[0].key  # one snapshot for both


def test_recipe_variable_takes_several_names_and_refuses_an_empty_one():
    import pytest
    from distonet.errors import DistonetError
    assert split_names(None) == ["minimal"]
    assert split_names("a,b") == ["a", "b"] and split_names("a b") == ["a", "b"]
    with pytest.raises(DistonetError, match="no recipe named"):
        split_names("")
