"""diskimage-builder elements: resolution by diskimage-builder's own code, what is refused, the
hooks tree, package-installs through DIB's squash and pkg-map, the stage's command sequence."""

import contextlib
import json
from pathlib import Path

import pytest

from distonet.elements import element_facts, resolve
from distonet.errors import BuildError, CommandError, RecipeError
from distonet.stages import REGISTRY
from distonet.stages.base import HostFacts, StageContext
from distonet.stages.elements import assemble, failed_script
from tests.helpers import keys, plan_of, write
from tests.recording import RecordingRunner


def element(paths, name, files: dict[str, str]) -> Path:
    d = paths.recipes.parent / "elements" / name
    for rel, text in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
        if ".d/" in rel or rel.startswith("bin/"):
            (d / rel).chmod(0o755)
    return d


def facts_for(paths, names, env=None):
    return element_facts(tuple(names), env or {}, "trixie", "amd64", paths.element_dirs, "r")


def test_dependencies_come_from_diskimage_builder(paths):
    names = [n for n, _ in resolve(("devuser", "dhcp-all-interfaces"), paths.element_dirs, "r")]
    # devuser → package-installs → install-bin; dhcp-all-interfaces → dib-init-system, pkg-map;
    # distonet-os stands for the operating system diskimage-builder insists on
    assert names == ["devuser", "dhcp-all-interfaces", "dib-init-system", "distonet-os", "install-bin",
                     "package-installs", "pkg-map"]


def test_unknown_element_gets_did_you_mean(paths):
    with pytest.raises(RecipeError, match=r"^r: dib.elements: no element 'devusr' \(did you mean 'devuser'\?\)"):
        resolve(("devusr",), paths.element_dirs, "r")


def test_an_os_element_is_refused(paths):
    with pytest.raises(RecipeError, match="distonet builds the operating system itself"):
        resolve(("debian-minimal",), paths.element_dirs, "r")


def test_an_element_that_makes_the_disk_is_refused(paths):
    element(paths, "disky", {"root.d/10-x": "#!/bin/sh\n", "install.d/10-y": "#!/bin/sh\n"})
    with pytest.raises(RecipeError, match="element 'disky' .* has root.d scripts"):
        resolve(("disky",), paths.element_dirs, "r")


def test_a_site_element_overrides_and_its_deps_resolve(paths):
    element(paths, "lab-motd", {"element-deps": "devuser\n", "install.d/50-motd": "#!/bin/sh\n"})
    found = dict(resolve(("lab-motd",), paths.element_dirs, "r"))
    assert found["lab-motd"] == paths.recipes.parent / "elements" / "lab-motd"
    assert "devuser" in found and "package-installs" in found


def test_package_installs_are_squashed_and_mapped_by_dib(paths):
    f = facts_for(paths, ["devuser", "dhcp-all-interfaces"], {"DIB_DEV_USER_USERNAME": "lab"})
    # dhcp-all-interfaces' pkg-map: dhcp-client → isc-dhcp-client (default), ifupdown for debian
    assert f["packages"] == {"install": {"install": ["ifupdown", "isc-dhcp-client", "ndisc6", "sudo"]}}
    assert f["phases"] == ["pre-install", "install", "post-install"]
    assert f["env"]["DISTRO_NAME"] == "debian" and f["env"]["DIB_RELEASE"] == "trixie"
    assert f["env"]["DIB_DEV_USER_USERNAME"] == "lab" and f["env"]["DIB_INIT_SYSTEM"] == "systemd"


def test_package_installs_phase_and_uninstall(paths):
    element(paths, "tools", {"package-installs.yaml": "curl:\n  phase: pre-install.d\nmake:\n  build-only: true\n",
                             "pkg-map": json.dumps({"family": {"debian": {"make": "make-guile"}}})})
    f = facts_for(paths, ["tools"])
    assert f["packages"] == {"pre-install": {"install": ["curl"]},
                             "install": {"install": ["make-guile"], "uninstall": ["make-guile"]}}


def test_elements_in_the_chain_and_their_content_in_the_key(paths):
    d = element(paths, "lab", {"install.d/50-x": "#!/bin/sh\necho 1\n", "finalise.d/50-y": "#!/bin/sh\n"})
    write(paths.recipes, "e", "extends: minimal\ndib: {elements: [lab]}\n")
    plan = plan_of("e", paths, elements=facts_for(paths, ["lab"]))
    names = [s.name for s in plan.stages]
    assert names[-3:] == ["elements", "elements.finalise", "seal"]
    assert plan.stage("elements").inputs["phases"] == ["install"]
    assert plan.stage("elements.finalise").inputs["phases"] == ["finalise"]
    before = keys(plan)
    (d / "finalise.d/50-y").write_text("#!/bin/sh\necho changed\n")
    after = keys(plan_of("e", paths, elements=facts_for(paths, ["lab"])))
    # every element's content is in both stages' keys: a change re-runs from the first
    assert [n for n in before if before[n] != after[n]] == ["elements", "elements.finalise", "seal"]
    assert keys(plan_of("minimal", paths))["packages.ssh"] == after["packages.ssh"]


def test_assemble_merges_like_generate_hooks(tmp_path, paths):
    a = element(paths, "a", {"install.d/10-a": "a", "bin/tool": "t", "element-deps": ""})
    b = element(paths, "b", {"install.d/20-b": "b", "post-install.d/10-b": "b"})
    pi = element(paths, "package-installs", {"install.d/01-package-installs": "x", "bin/package-installs-v2": "p"})
    hooks = tmp_path / "in_target.d"
    assemble(hooks, [("a", a), ("b", b), ("package-installs", pi)])
    assert sorted(p.name for p in (hooks / "install.d").iterdir()) == ["10-a", "20-b"]  # not package-installs'
    assert (hooks / "bin/tool").exists() and (hooks / "bin/package-installs-v2").exists()
    assert (hooks / "dib-run-parts").is_file()
    c = element(paths, "c", {"install.d/10-a": "again"})
    with pytest.raises(BuildError, match="two elements have install.d/10-a"):
        assemble(tmp_path / "again", [("a", a), ("c", c)])


def run_elements(paths, tmp_path, monkeypatch, names, runner, env=None):
    write(paths.recipes, "e", f"extends: minimal\ndib: {{elements: [{', '.join(names)}]}}\n")
    f = facts_for(paths, names, env)
    plan = plan_of("e", paths, elements=f)
    stage = plan.stage("elements")
    tree = tmp_path / "merged"
    (tree / "tmp").mkdir(parents=True)
    monkeypatch.setattr(StageContext, "mount_for_writing", lambda self: tree)
    monkeypatch.setattr("distonet.stages.elements.chroot_session", lambda *a, **k: contextlib.nullcontext())
    sources = {f"element:{e['name']}": Path(e["dir"]) for e in f["elements"]}
    ctx = StageContext("elements", stage.key, stage.inputs, (), tmp_path / "partial",
                       HostFacts(mirror="m", cache=tmp_path, work=tmp_path, sources=sources), None, None, runner)
    return REGISTRY["elements"].make(ctx), tree


def test_phases_install_packages_then_run_dib_run_parts(paths, tmp_path, monkeypatch):
    runner = RecordingRunner()
    stamp, tree = run_elements(paths, tmp_path, monkeypatch, ["devuser", "dhcp-all-interfaces"], runner,
                               {"DIB_DEV_USER_USERNAME": "lab"})
    inside = [c[c.index("chroot") + 2:] for c in runner.calls]
    run_parts = [c for c in inside if any(a.endswith("dib-run-parts") for a in c)]
    assert [c[-1] for c in run_parts] == ["/tmp/in_target.d/pre-install.d", "/tmp/in_target.d/install.d",
                                          "/tmp/in_target.d/post-install.d"]
    assert "DIB_DEV_USER_USERNAME=lab" in run_parts[0] and "DISTRO_NAME=debian" in run_parts[0]
    assert any(a.startswith("PATH=/tmp/in_target.d/bin:") for a in run_parts[0])
    apt = [c for c in inside if "apt-get" in c]
    assert len(apt) == 1 and apt[0][-4:] == ("ifupdown", "isc-dhcp-client", "ndisc6", "sudo")
    # the packages of install.d come before its scripts
    assert inside.index(apt[0]) < inside.index(run_parts[1])
    assert not (tree / "tmp/in_target.d").exists()  # nothing of the hooks tree stays in the image
    assert stamp["phases"] == ["pre-install", "install", "post-install"]


def test_a_failing_element_script_is_named(paths, tmp_path, monkeypatch):
    element(paths, "broken", {"install.d/50-break": "#!/bin/sh\nexit 4\n"})

    def runner(argv, **kw):
        if any(str(a).endswith("dib-run-parts") for a in argv):
            e = CommandError("command failed (4): unshare …\ndib-run-parts Running /tmp/in_target.d/install.d/50-break\n"
                             "oops")
            e.returncode = 4
            raise e
        return RecordingRunner()(argv, **kw)
    with pytest.raises(BuildError, match=r"^element script install.d/50-break failed \(exit 4\)"):
        run_elements(paths, tmp_path, monkeypatch, ["broken"], runner)
    assert not (tmp_path / "merged/tmp/in_target.d").exists()
    assert failed_script("nothing", "finalise") == "finalise.d"


def test_package_installs_are_kept_per_content_for_the_next_load(paths, monkeypatch):
    import distonet.elements as el
    first = el.element_facts(("devuser",), {}, "trixie", "amd64", paths.element_dirs, "r", paths.cache)

    def not_again(*a, **k):
        raise AssertionError("squashed again although nothing changed")
    monkeypatch.setattr(el, "package_installs", not_again)
    assert el.element_facts(("devuser",), {}, "trixie", "amd64", paths.element_dirs, "r", paths.cache) == first
    with pytest.raises(AssertionError, match="squashed again"):  # another environment is another result
        el.element_facts(("devuser",), {"DIB_X": "1"}, "trixie", "amd64", paths.element_dirs, "r", paths.cache)


def test_a_script_in_no_phase_is_refused_with_the_phase_meant(paths):
    element(paths, "typo", {"instal.d/10-x": "#!/bin/sh\n"})
    with pytest.raises(RecipeError, match=r"element 'typo' .* has instal.d, which is no diskimage-builder "
                                          r"phase: its scripts would never run \(did you mean install.d\?\)"):
        resolve(("typo",), paths.element_dirs, "r")


def test_a_missing_dependency_is_named(paths):
    element(paths, "needy", {"element-deps": "no-such-element\n", "install.d/10-x": "#!/bin/sh\n"})
    with pytest.raises(RecipeError, match="^r: dib.elements: .*no-such-element"):
        resolve(("needy",), paths.element_dirs, "r")


def test_an_elements_own_data_directories_are_not_phases(paths):
    element(paths, "datad", {"udev.d/70-x.rules": "x\n", "init.d/x": "x\n", "install.d/10-x": "#!/bin/sh\n"})
    assert "datad" in dict(resolve(("datad",), paths.element_dirs, "r"))
