from distonet.plan import make_plan
from distonet.recipe import load_recipe
from distonet.tasks import make_tasks


def tasks_of(paths, name="minimal"):
    plan = make_plan(load_recipe(name, paths.recipes), paths, mirror="http://archive.invalid/debian", archive="A")
    return plan, {(t["basename"] + (":" + t["name"] if "name" in t else "")): t for t in make_tasks(plan)}


def test_task_names_carry_the_recipe(paths):
    _, tasks = tasks_of(paths)
    assert set(tasks) == {"bootstrap:minimal", "packages.kernel:minimal", "packages.base:minimal",
                          "packages.ssh:minimal", "seal:minimal", "rootfs:minimal", "kernel:minimal",
                          "disk:minimal", "qcow2:minimal", "manifest:minimal", "build", "boot"}


def test_stage_chain_and_targets_are_stamps(paths):
    plan, tasks = tasks_of(paths)
    assert tasks["bootstrap:minimal"]["task_dep"] == []
    assert tasks["packages.kernel:minimal"]["task_dep"] == ["bootstrap:minimal"]
    assert tasks["seal:minimal"]["task_dep"] == ["packages.ssh:minimal"]
    for stage in plan.stages:
        t = tasks[f"{stage.name}:minimal"]
        assert t["targets"] == [str(plan.stamp(stage))]
        assert stage.key[:32] in t["targets"][0]
        assert t["uptodate"][0]() is False  # nothing built in a fresh cache


def test_outputs_depend_on_seal_and_their_needs(paths):
    _, tasks = tasks_of(paths)
    assert tasks["rootfs:minimal"]["task_dep"] == ["seal:minimal"]
    assert tasks["disk:minimal"]["task_dep"] == ["seal:minimal", "rootfs:minimal"]
    assert tasks["qcow2:minimal"]["task_dep"] == ["seal:minimal", "disk:minimal"]
    assert set(tasks["manifest:minimal"]["task_dep"]) == {"rootfs:minimal", "kernel:minimal", "disk:minimal", "qcow2:minimal"}
    assert tasks["build"]["task_dep"] == ["manifest:minimal"]
    assert tasks["build"]["clean"]
    assert tasks["disk:minimal"]["targets"][0].endswith("output/minimal/disk.raw")
