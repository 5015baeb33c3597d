from distonet.plan import make_plan
from distonet.recipe import load_recipe
from tests.conftest import write

MIRROR = "http://archive.invalid/debian"


def plan_of(name, paths, archive="A"):
    return make_plan(load_recipe(name, paths.recipes), paths, mirror=MIRROR, archive=archive)


def keys(plan):
    return {s.name: s.key for s in plan.stages}


def test_stage_order(paths):
    plan = plan_of("minimal", paths)
    assert [s.name for s in plan.stages] == ["bootstrap", "packages.kernel", "packages.base", "packages.ssh", "seal"]
    assert [s.parent.name if s.parent else None for s in plan.stages] == [None, "bootstrap", "packages.kernel", "packages.base", "packages.ssh"]


def test_keys_are_stable(paths):
    assert keys(plan_of("minimal", paths)) == keys(plan_of("minimal", paths))


def test_changing_one_layer_changes_only_it_and_downstream(paths):
    write(paths.recipes, "m2", "extends: minimal\nreplace: [packages.base]\npackages: {base: [systemd, udev]}\n")
    a, b = keys(plan_of("minimal", paths)), keys(plan_of("m2", paths))
    assert a["bootstrap"] == b["bootstrap"] and a["packages.kernel"] == b["packages.kernel"]
    assert a["packages.base"] != b["packages.base"]
    assert a["packages.ssh"] != b["packages.ssh"] and a["seal"] != b["seal"]


def test_package_order_does_not_matter(paths):
    write(paths.recipes, "m2", "extends: minimal\nreplace: [packages.ssh]\npackages: {ssh: [openssh-server]}\n")
    assert keys(plan_of("minimal", paths)) != {} and keys(plan_of("m2", paths))["packages.ssh"] == keys(plan_of("minimal", paths))["packages.ssh"]


def test_hostname_changes_only_seal(paths):
    write(paths.recipes, "m2", "extends: minimal\nhostname: other\n")
    a, b = keys(plan_of("minimal", paths)), keys(plan_of("m2", paths))
    assert [n for n in a if a[n] != b[n]] == ["seal"]


def test_extending_with_a_layer_shares_every_parent_stage(paths):
    write(paths.recipes, "science", "extends: minimal\npackages: {science: [python3-numpy]}\n")
    a, b = plan_of("minimal", paths), plan_of("science", paths)
    assert [s.name for s in b.stages][:4] == [s.name for s in a.stages][:4]
    for sa, sb in zip(a.stages[:4], b.stages[:4]):
        assert sa.key == sb.key and a.stage_dir(sa) == b.stage_dir(sb)
    assert b.stages[4].name == "packages.science"


def test_archive_state_changes_every_stage(paths):
    a, b = keys(plan_of("minimal", paths, "A")), keys(plan_of("minimal", paths, "B"))
    assert all(a[n] != b[n] for n in a)


def test_bookworm_is_one_key_away(paths):
    write(paths.recipes, "old", "extends: minimal\ndistribution: {suite: bookworm}\n")
    a, b = plan_of("minimal", paths), plan_of("old", paths)
    assert b.stages[0].inputs["suite"] == "bookworm"
    assert b.stages[0].key != a.stages[0].key


def test_outputs_pull_in_what_they_need_in_order(paths):
    write(paths.recipes, "q", "extends: minimal\nreplace: [outputs]\noutputs: {qcow2: {}}\n")
    plan = plan_of("q", paths)
    assert [o.name for o in plan.outputs] == ["rootfs", "disk", "qcow2"]
    assert plan.output("disk").needs == ("rootfs",)


def test_output_key_follows_seal_and_options(paths):
    write(paths.recipes, "m2", "extends: minimal\noutputs: {rootfs: {free_mib: 1024}}\n")
    a, b = plan_of("minimal", paths), plan_of("m2", paths)
    assert a.output("kernel").key == b.output("kernel").key
    assert a.output("rootfs").key != b.output("rootfs").key
    assert a.output("disk").key != b.output("disk").key  # it contains the rootfs


def test_lower_dirs_nearest_first(paths):
    plan = plan_of("minimal", paths)
    assert [s.name for s in plan.sealed.ancestry()] == ["seal", "packages.ssh", "packages.base", "packages.kernel", "bootstrap"]


def test_root_uuid_is_deterministic_and_per_image(paths):
    write(paths.recipes, "m2", "extends: minimal\nhostname: other\n")
    assert plan_of("minimal", paths).root_uuid == plan_of("minimal", paths).root_uuid
    assert plan_of("minimal", paths).root_uuid != plan_of("m2", paths).root_uuid


def test_boot_settings_change_the_disk_only(paths):
    write(paths.recipes, "m2", "extends: minimal\nboot: {cmdline: [quiet]}\n")
    a, b = plan_of("minimal", paths), plan_of("m2", paths)
    assert keys(a) == keys(b)
    assert a.output("rootfs").key == b.output("rootfs").key
    assert a.output("disk").key != b.output("disk").key and a.output("qcow2").key != b.output("qcow2").key
