"""Stage sharing, late-layer changes, outputs remade after an edit, a failing step, and the
previous stable."""

import subprocess

import pytest

from distonet.manifest import Manifest
from distonet.store import StageStore
from tests.integration.conftest import distonet, doit, plan_for, summary_states

pytestmark = pytest.mark.integration


def du(path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout.split()[0])


def test_extending_recipe_reuses_parent_stages_and_late_change_keeps_bootstrap(minimal_plan, recipes):
    (recipes / "extra.yaml").write_text(
        "extends: minimal\nhostname: extra\npackages: {extra: [file]}\nreplace: [outputs]\noutputs: {rootfs: {}}\n")
    store = StageStore(minimal_plan.paths.stages)
    shared = minimal_plan.stages[:-1]
    before = {s.name: store.stamp_path(s.key).stat().st_mtime_ns for s in shared}
    distonet("build", "extra", recipes=recipes)
    plan = plan_for("extra", recipes)
    for s in shared:  # same snapshot directory, not rebuilt, not copied
        assert plan.stage(s.name).key == s.key
        assert store.stamp_path(s.key).stat().st_mtime_ns == before[s.name]
    layer = plan.stage("packages.extra")
    assert du(store.dir(layer.key)) < du(store.dir(minimal_plan.stages[0].key)) / 5

    (recipes / "extra.yaml").write_text(
        "extends: minimal\nhostname: extra\npackages: {extra: [file, bzip2]}\nreplace: [outputs]\noutputs: {rootfs: {}}\n")
    plan2 = plan_for("extra", recipes)
    store.remove([plan2.stage("packages.extra").key])  # left by an earlier run of this test
    proc = distonet("build", "extra", recipes=recipes)
    assert plan2.stage("packages.extra").key != layer.key
    for s in shared:
        assert store.stamp_path(s.key).stat().st_mtime_ns == before[s.name]
    states = summary_states(proc.stderr)
    assert states["bootstrap"] == "cached" and states["packages.extra"] == "run"
    assert states["output rootfs"] == "run"  # the sealed tree changed: the image is remade
    assert Manifest.load(plan2.out_dir).build_id == plan2.build_id


def test_boot_option_edit_remakes_the_disk_and_carries_the_rootfs_over(minimal_plan, recipes):
    (recipes / "edited.yaml").write_text("extends: minimal\nreplace: [outputs]\noutputs: {disk: {}}\n")
    distonet("build", "edited", recipes=recipes)
    plan = plan_for("edited", recipes)
    rootfs_inode = (plan.out_dir / "rootfs.img").stat().st_ino
    disk_sha = Manifest.load(plan.out_dir).artifact("disk").sha256
    (recipes / "edited.yaml").write_text("extends: minimal\nreplace: [outputs]\noutputs: {disk: {}}\n"
                                         "boot: {cmdline: [quiet]}\n")
    proc = distonet("build", "edited", recipes=recipes)
    states = summary_states(proc.stderr)
    assert states["output disk"] == "run" and states["output rootfs"] == "cached"
    m = Manifest.load(plan.out_dir)
    assert m.artifact("disk").sha256 != disk_sha and "quiet" in m.kernel_cmdline
    assert (plan.out_dir / "rootfs.img").stat().st_ino == rootfs_inode  # carried over, not copied

    # A file changed on disk (an image booted without a snapshot) is remade on the next build.
    with open(plan.out_dir / "disk.raw", "r+b") as fh:
        fh.seek(4096)
        fh.write(b"scribbled")
    proc = distonet("build", "edited", recipes=recipes)
    assert summary_states(proc.stderr)["output disk"] == "run"
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=plan.out_dir, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    distonet("clean", "edited", recipes=recipes)
    assert not plan.out_dir.exists()


def test_a_misspelt_package_stops_the_build_before_any_stage(minimal_plan, recipes):
    (recipes / "typo.yaml").write_text("extends: minimal\npackages: {tools: [tre]}\n")
    proc = distonet("build", "typo", recipes=recipes, check=False)
    assert proc.returncode == 2
    assert "typo.yaml: packages.tools: no package 'tre' in trixie main (did you mean 'tree'?)" in proc.stderr
    assert "▶" not in proc.stderr  # no step started
    assert not StageStore(minimal_plan.paths.stages).done(plan_for("typo", recipes, check=False).stage("packages.tools").key)


def test_a_failing_step_fails_the_build_in_one_line(minimal_plan, recipes):
    # The name exists, the version does not: only apt can tell, in the stage.
    (recipes / "badver.yaml").write_text("extends: minimal\npackages: {tools: [tree=0.0-no-such-version]}\n"
                                         "replace: [outputs]\noutputs: {kernel: {}}\n")
    proc = distonet("build", "badver", recipes=recipes, check=False)
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if l.startswith("distonet: error:")]
    assert lines and "badver.yaml: stage packages.tools: command failed" in lines[0], proc.stderr[-3000:]
    assert "badver: FAILED" in proc.stderr and "Traceback" not in proc.stderr
    assert "function" not in proc.stderr and "returned False" not in proc.stderr  # no doit noise
    assert "0.0-no-such-version" in proc.stderr  # apt's own words, from the log's tail
    plan = plan_for("badver", recipes)
    key = plan.stage("packages.tools").key
    assert not StageStore(plan.paths.stages).done(key)
    assert not list(plan.paths.stages.glob(f"{key[:32]}.partial-*"))
    assert not plan.out_dir.exists()
    assert "0.0-no-such-version" in (plan.paths.cache / "logs" / "badver.log").read_text()


def test_several_recipes_in_one_graph(minimal_plan, recipes):
    (recipes / "one.yaml").write_text("extends: minimal\nhostname: one\nreplace: [outputs]\noutputs: {kernel: {}}\n")
    (recipes / "two.yaml").write_text("extends: minimal\nhostname: two\nreplace: [outputs]\noutputs: {kernel: {}}\n")
    proc = doit("build", "recipe=one,two", recipes=recipes)
    assert "one: built" in proc.stderr and "two: built" in proc.stderr
    for name in ("one", "two"):
        assert Manifest.load(plan_for(name, recipes).out_dir).artifact("kernel")
    proc = distonet("build", "one", "two", recipes=recipes)
    assert set(summary_states(proc.stderr).values()) == {"cached"}
    distonet("clean", "one", "two", recipes=recipes)


# nightly: a second suite's bootstrap and a boot, three minutes; CI keeps the layer tests
@pytest.mark.nightly
def test_previous_stable_builds_by_changing_one_key_and_boots(minimal_plan, recipes):
    (recipes / "bookworm.yaml").write_text("extends: minimal\ndistribution: {suite: bookworm}\n")
    distonet("build", "bookworm", recipes=recipes)
    plan = plan_for("bookworm", recipes)
    assert Manifest.load(plan.out_dir).resolved_recipe["distribution"]["suite"] == "bookworm"
    from distonet.boot.qemu import boot_disk
    result = boot_disk(plan.out_dir / "disk.raw", "bios", kernel=plan.out_dir / "vmlinuz", name="bookworm/bios")
    assert result.reached, result.console[-3000:]
    assert "Debian GNU/Linux 12" in result.console
