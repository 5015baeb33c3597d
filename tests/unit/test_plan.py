"""The stage and output keys: the right ones change, the rest stay."""

from distonet.store import StageStore
from tests.helpers import keys, plan_of, write


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


def test_package_order_and_duplicates_do_not_matter(paths):
    base = plan_of("minimal", paths).stage("packages.base").inputs["packages"]
    shuffled = list(reversed(base)) + [base[0]]
    write(paths.recipes, "m2", "extends: minimal\nreplace: [packages.base]\n"
                               f"packages: {{base: [{', '.join(shuffled)}]}}\n")
    assert list(reversed(base)) != list(base)  # really another order
    assert keys(plan_of("m2", paths)) == keys(plan_of("minimal", paths))


def test_kernel_package_changes_the_kernel_layer_and_after(paths):
    write(paths.recipes, "k", "extends: minimal\nkernel: {package: linux-image-cloud-amd64}\n")
    a, b = keys(plan_of("minimal", paths)), keys(plan_of("k", paths))
    assert a["bootstrap"] == b["bootstrap"]
    assert [n for n in a if a[n] != b[n]] == ["packages.kernel", "packages.base", "packages.ssh", "seal"]


def test_hostname_changes_only_seal(paths):
    write(paths.recipes, "m2", "extends: minimal\nhostname: other\n")
    a, b = keys(plan_of("minimal", paths)), keys(plan_of("m2", paths))
    assert [n for n in a if a[n] != b[n]] == ["seal"]


def test_extending_with_a_layer_shares_every_parent_stage(paths):
    write(paths.recipes, "science", "extends: minimal\npackages: {science: [python3-numpy]}\n")
    a, b = plan_of("minimal", paths), plan_of("science", paths)
    store = StageStore(paths.stages)
    assert [s.name for s in b.stages][:4] == [s.name for s in a.stages][:4]
    for sa, sb in zip(a.stages[:4], b.stages[:4]):
        assert sa.key == sb.key and store.dir(sa.key) == store.dir(sb.key)
    assert b.stages[4].name == "packages.science"


def test_archive_state_changes_every_stage_but_the_host_mirror_none(paths):
    a = keys(plan_of("minimal", paths, archive="A"))
    assert all(a[n] != b for n, b in keys(plan_of("minimal", paths, archive="B")).items())
    # Two builders on two mirrors of one archive state share every stage.
    assert keys(plan_of("minimal", paths, mirror="http://other.invalid/debian")) == a


def test_a_mirror_the_recipe_names_is_content(paths):
    write(paths.recipes, "m", "extends: minimal\ndistribution: {mirror: 'http://site.invalid/debian'}\n")
    assert keys(plan_of("m", paths))["bootstrap"] != keys(plan_of("minimal", paths))["bootstrap"]


def test_security_and_updates_suites_are_in_the_bootstrap_key(paths):
    on = plan_of("minimal", paths)
    assert on.stages[0].inputs["security"] is True and on.stages[0].inputs["updates"] is True
    off = plan_of("minimal", paths, security=False)
    assert keys(off)["bootstrap"] != keys(on)["bootstrap"]


def test_bookworm_is_one_key_away(paths):
    write(paths.recipes, "old", "extends: minimal\ndistribution: {suite: bookworm}\n")
    a, b = plan_of("minimal", paths), plan_of("old", paths)
    assert b.stages[0].inputs["suite"] == "bookworm"
    assert b.stages[0].key != a.stages[0].key


def test_stage_inputs_are_read_only(paths):
    import pytest
    plan = plan_of("minimal", paths)
    with pytest.raises(TypeError):
        plan.stages[0].inputs["suite"] = "sid"  # type: ignore[index]


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
    assert "quiet" in b.build.cmdline and f"root=UUID={b.root_uuid}" in b.build.cmdline


def test_build_id_follows_the_resolved_recipe(paths):
    write(paths.recipes, "m2", "extends: minimal\ndescription: another words\n")
    a, b = plan_of("minimal", paths), plan_of("m2", paths)
    assert keys(a) == keys(b) and a.build_id != b.build_id


def test_unknown_stage_or_output_is_a_clear_error(paths):
    import pytest
    from distonet.errors import DistonetError
    plan = plan_of("minimal", paths)
    with pytest.raises(DistonetError, match="no stage named 'nope'"):
        plan.stage("nope")
    with pytest.raises(DistonetError, match="no output named 'iso'"):
        plan.output("iso")


def test_recommends_and_purge(paths):
    from distonet.stages.packages import apt_install_argv, apt_purge_argv
    write(paths.recipes, "r", "extends: minimal\napt: {recommends: true, purge: [nano, nano]}\n")
    a, b = keys(plan_of("minimal", paths)), plan_of("r", paths)
    assert list(keys(b))[-2:] == ["packages.purge", "seal"]
    assert b.stage("packages.purge").inputs == {"purge": ["nano"]}
    assert b.stage("packages.base").inputs["recommends"] is True and a["bootstrap"] == keys(b)["bootstrap"]
    assert "recommends" not in plan_of("minimal", paths).stage("packages.base").inputs  # keys unchanged by default
    assert "--install-recommends" in apt_install_argv(["x"], None, True)
    assert "--no-install-recommends" in apt_install_argv(["x"], None)
    assert apt_purge_argv(["nano"])[-4:] == ["purge", "--autoremove", "--", "nano"]


def test_direct_recommends_one_level():
    from distonet.stages.packages import candidates, pick_recommends
    shown = ("Package: science-physics\nVersion: 1.15\nRecommends: python3-numpy, paraview | visit,"
             " gone-pkg, octave (>= 8), python3-numpy\nDepends: science-config\n\n"
             "Package: science-chemistry\nRecommends: avogadro:any, octave, python3-scipy\n")
    picked = pick_recommends(shown, {"python3-numpy", "visit", "octave", "avogadro", "python3-scipy"},
                             {"python3-scipy"})
    # the first available alternative, no missing names, no repeats, nothing the layer names already
    assert picked == ["python3-numpy", "visit", "octave", "avogadro"]
    policy = ("python3-numpy:\n  Installed: (none)\n  Candidate: 1:2.2.4+ds-1\n  Version table:\n"
              "     1:2.2.4+ds-1 500\naxiom:\n  Installed: (none)\n  Candidate: (none)\n"
              "  Version table:\n     20170501-11 -1\n")
    assert candidates(policy) == {"python3-numpy"}  # a pin below 0 leaves no candidate


def test_direct_recommends_in_the_layer_key(paths):
    write(paths.recipes, "sci", "extends: minimal\npackages: {science: [science-physics]}\n"
                                "apt: {direct_recommends: [science]}\n")
    plan = plan_of("sci", paths)
    assert plan.stage("packages.science").inputs["recommends"] == "direct"
    assert keys(plan)["packages.ssh"] == keys(plan_of("minimal", paths))["packages.ssh"]


def test_pins_go_before_the_layers_and_local_debs_after(paths, tmp_path):
    from distonet.stages.repositories import preferences_text
    write(paths.recipes, "p", "extends: minimal\napt:\n  pins: [{packages: '*', pin: 'release a=trixie-backports', "
                              "priority: 100}]\n")
    plan = plan_of("p", paths, debs=({"name": "hello_1.0_all.deb", "sha256": "ab", "path": "/x"},))
    names = [s.name for s in plan.stages]
    assert names.index("repositories") < names.index("packages.kernel")
    assert names[-3:] == ["packages.ssh", "packages.local", "seal"]
    assert plan.stage("packages.local").inputs["debs"] == [{"name": "hello_1.0_all.deb", "sha256": "ab"}]
    text = preferences_text(list(plan.stage("repositories").inputs["pins"]))
    assert "Package: *\nPin: release a=trixie-backports\nPin-Priority: 100\n" in text


def test_recommends_for_some_layers_only(paths):
    import pytest
    from distonet.errors import RecipeError
    from distonet.recipe import load_recipe
    write(paths.recipes, "sci", "extends: minimal\npackages: {science: [science-physics]}\napt: {recommends: [science]}\n")
    plan = plan_of("sci", paths)
    assert plan.stage("packages.science").inputs["recommends"] is True
    assert "recommends" not in plan.stage("packages.base").inputs
    assert keys(plan)["packages.base"] == keys(plan_of("minimal", paths))["packages.base"]
    write(paths.recipes, "bad", "extends: minimal\napt: {recommends: [sciense]}\npackages: {science: [x1]}\n")
    with pytest.raises(RecipeError, match="apt.recommends: no layer 'sciense' \\(did you mean 'science'\\?\\)"):
        load_recipe("bad", paths.search)


def test_local_debs_are_installed_from_the_sessions_run(paths, tmp_path, monkeypatch):
    import contextlib
    import hashlib
    from distonet.stages import REGISTRY
    from distonet.stages.base import HostFacts, StageContext
    from tests.recording import RecordingRunner
    deb = tmp_path / "hello_1.0_all.deb"
    deb.write_bytes(b"not really a deb")
    write(paths.recipes, "p", "extends: minimal\napt: {debs: [hello_1.0_all.deb]}\n")
    plan = plan_of("p", paths, debs=({"name": deb.name, "sha256": hashlib.sha256(deb.read_bytes()).hexdigest(),
                                      "path": str(deb)},))
    stage = plan.stage("packages.local")
    tree = tmp_path / "merged"
    tree.mkdir()
    monkeypatch.setattr(StageContext, "mount_for_writing", lambda self: tree)
    monkeypatch.setattr("distonet.stages.packages.chroot_session", lambda *a, **k: contextlib.nullcontext())
    runner = RecordingRunner()
    ctx = StageContext("packages.local", stage.key, stage.inputs, (), tmp_path / "partial",
                       HostFacts(mirror="m", cache=tmp_path, work=tmp_path, sources={f"deb:{deb.name}": deb}),
                       None, None, runner)
    assert REGISTRY["packages"].make(ctx) == {"debs": [deb.name]}
    (argv,) = runner.calls
    assert argv[-2:] == ("--", "/run/distonet-debs/hello_1.0_all.deb")
    assert (tree / "run/distonet-debs" / deb.name).read_bytes() == b"not really a deb"


def test_the_kernel_layer_makes_its_initrd_once():
    """The kernel's hook (INITRD=No) and the trigger (no initrd yet) make none; the layer makes
    it once after apt, with the /initrd.img links the hook would have made."""
    from distonet.stages.packages import install_commands
    cmds = install_commands("packages.kernel", ["linux-image-amd64", "initramfs-tools"], None, False)
    assert [env for _, env in cmds] == [{"INITRD": "No"}, None]
    assert cmds[0][0][-3:] == ["--", "linux-image-amd64", "initramfs-tools"]
    script = cmds[1][0][2]
    assert "update-initramfs -c -k all" in script and "linux-update-symlinks install" in script
    # another layer, or a kernel layer with another initrd tool, installs as apt would alone
    assert [env for _, env in install_commands("packages.base", ["initramfs-tools"], None, False)] == [None]
    assert len(install_commands("packages.kernel", ["linux-image-amd64", "dracut"], None, False)) == 1


def test_relative_cache_and_output_directories_are_made_absolute(tmp_path, monkeypatch):
    """chpasswd --root (seal) refuses a relative tree: DISTONET_CACHE=cache/x must still work."""
    from distonet.paths import Paths
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISTONET_CACHE", "c")
    monkeypatch.setenv("DISTONET_OUTPUT", "o")
    monkeypatch.setenv("DISTONET_RECIPES", "r")
    p = Paths.default()
    assert (p.cache, p.output, p.recipes) == (tmp_path / "c", tmp_path / "o", tmp_path / "r")
    assert all(d.is_absolute() for d in p.search)
