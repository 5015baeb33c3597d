import pytest

from distonet.errors import RecipeError
from distonet.enums import BootstrapTool, Firmware
from distonet.recipe import load_recipe, merge
from tests.helpers import write


def test_minimal_loads_with_trixie_and_every_first_output(recipes):
    r = load_recipe("minimal", recipes)
    assert r.name == "minimal"
    assert r.distribution.suite == "trixie"
    assert r.distribution.bootstrap == BootstrapTool.mmdebstrap
    assert r.distribution.mirror is None  # taken from the build host at plan time
    assert set(r.enabled_outputs()) == {"rootfs", "kernel", "disk", "qcow2", "sbom"}
    assert r.outputs.rootfs.extent_mib == 4
    assert "openssh-server" in r.packages["ssh"]
    assert r.boot.firmware == (Firmware.bios, Firmware.uefi)
    assert r.boot.console.startswith("ttyS0")
    assert r.access.root_password_hash is None


def test_extends_merges_maps_deeply_and_appends_lists(recipes):
    write(recipes, "child", """
extends: minimal
distribution: {suite: bookworm}
packages:
  base: [vim-tiny]
  science: [python3-numpy]
boot: {cmdline: [quiet]}
""")
    r = load_recipe("child", recipes)
    parent = load_recipe("minimal", recipes)
    assert r.distribution.suite == "bookworm"
    assert r.distribution.architecture == parent.distribution.architecture
    assert r.packages["base"] == parent.packages["base"] + ("vim-tiny",)
    assert list(r.packages) == list(parent.packages) + ["science"]  # parent's layers first
    assert r.boot.console == parent.boot.console
    assert r.extends == ("minimal",)
    assert r.description == ""  # not inherited


def test_replace_takes_the_childs_list_whole(recipes):
    write(recipes, "child", "extends: minimal\nreplace: [packages.base]\npackages: {base: [systemd]}\n")
    assert load_recipe("child", recipes).packages["base"] == ("systemd",)


def test_extends_a_list_merges_left_to_right(recipes):
    write(recipes, "a", "extends: minimal\nhostname: a\npackages: {x: [one]}\n")
    write(recipes, "b", "extends: minimal\nhostname: b\npackages: {x: [two]}\n")
    write(recipes, "c", "extends: [a, b]\n")
    r = load_recipe("c", recipes)
    assert r.hostname == "b"
    assert r.packages["x"] == ("one", "two")


def test_merge_rules_directly():
    assert merge({"a": {"b": 1, "c": [1]}}, {"a": {"c": [2], "d": 3}}, set()) == {"a": {"b": 1, "c": [1, 2], "d": 3}}
    assert merge({"a": [1, 2]}, {"a": [3]}, {"a"}) == {"a": [3]}


def error_of(recipes, name, text) -> str:
    path = write(recipes, name, text)
    with pytest.raises(RecipeError) as exc:
        load_recipe(name, recipes)
    msg = str(exc.value)
    assert ".yaml" in msg and str(path.parent) in msg  # always names a file
    return msg


def test_unknown_top_level_key_suggests_the_nearest(recipes):
    msg = error_of(recipes, "bad", "extends: minimal\npakages: {x: [y]}\n")
    assert "bad.yaml: pakages: unknown key; did you mean 'packages'?" in msg


def test_unknown_nested_key_names_the_path(recipes):
    msg = error_of(recipes, "bad", "boot: {consol: ttyS1}\n")
    assert "boot.consol" in msg and "'console'" in msg


def test_unknown_output_kind(recipes):
    msg = error_of(recipes, "bad", "outputs: {qcow: {}}\n")
    assert "outputs.qcow: unknown output kind; did you mean 'qcow2'?" in msg


def test_unknown_output_option(recipes):
    msg = error_of(recipes, "bad", "outputs: {rootfs: {extent: 8}}\n")
    assert "outputs.rootfs.extent" in msg and "'extent_mib'" in msg


def test_wrong_type_names_file_and_key(recipes):
    msg = error_of(recipes, "bad", "boot: {timeout: soon}\n")
    assert "bad.yaml: boot.timeout:" in msg and "integer" in msg and '"soon"' in msg
    msg = error_of(recipes, "bad2", "packages: {base: systemd}\n")
    assert "packages.base" in msg


def test_bad_enum_value(recipes):
    msg = error_of(recipes, "bad", "distribution: {bootstrap: cdebootstrap}\n")
    assert "distribution.bootstrap" in msg and "mmdebstrap" in msg


def test_error_in_a_parent_names_the_parent_file(recipes):
    write(recipes, "parent", "hostnme: x\n")
    msg = error_of(recipes, "child", "extends: parent\n")
    assert "parent.yaml: hostnme" in msg


def test_missing_parent(recipes):
    msg = error_of(recipes, "orphan", "extends: minmal\n")
    assert "orphan.yaml: extends: no recipe named 'minmal'" in msg and "did you mean 'minimal'" in msg


def test_extends_cycle(recipes):
    write(recipes, "a", "extends: b\n")
    msg = error_of(recipes, "b", "extends: a\n")
    assert "cycle" in msg and ("a → b → a" in msg or "b → a → b" in msg)


def test_yaml_syntax_error_names_file_and_line(recipes):
    msg = error_of(recipes, "bad", "boot:\n  cmdline: [quiet\n")
    assert "bad.yaml:" in msg and "not valid YAML" in msg


def test_top_level_must_be_a_mapping(recipes):
    assert "mapping" in error_of(recipes, "bad", "- a\n- b\n")


def test_name_must_match_the_file(recipes):
    assert "differs from the file name" in error_of(recipes, "bad", "name: other\n")


def test_unknown_recipe(recipes):
    with pytest.raises(RecipeError, match="no recipe named 'nope'"):
        load_recipe("nope", recipes)
