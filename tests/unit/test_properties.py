"""Property-based tests (hypothesis) of the three parsers of user input: the recipe loader,
the extends merge, the site inventory. Whatever the input, the answer is a value or a
RecipeError naming the file, never another exception."""

import string

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from distonet.errors import RecipeError
from distonet.inventory import load as load_inventory
from distonet.recipe import load_recipe, merge

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False),
                    st.text(max_size=20))
keys = st.one_of(st.sampled_from(["extends", "distribution", "packages", "outputs", "overlays", "boot",
                                  "hostname", "kernel", "access", "apt", "replace", "vars", "netboot",
                                  "suite", "mirror", "rootfs", "disk", "base", "cmdline", "firmware"]),
                 st.text(string.ascii_lowercase + "_-.", min_size=1, max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(keys, inner, max_size=4)), max_leaves=12)


@SETTINGS
@given(body=st.dictionaries(keys, values, max_size=6))
def test_any_recipe_loads_or_names_its_file(recipes, body):
    path = recipes / "fuzzed.yaml"
    path.write_text(yaml.safe_dump(body))
    try:
        load_recipe("fuzzed", recipes)
    except RecipeError as exc:
        assert "fuzzed" in str(exc), str(exc)


@SETTINGS
@given(text=st.text(max_size=200))
def test_any_text_as_a_recipe_loads_or_names_its_file(recipes, text):
    (recipes / "fuzzed.yaml").write_text(text)
    try:
        load_recipe("fuzzed", recipes)
    except RecipeError as exc:
        assert "fuzzed" in str(exc), str(exc)


maps = st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=4), values, max_size=5)


@settings(max_examples=300, deadline=None)
@given(parent=maps, child=maps)
def test_merge_keeps_the_parent_and_takes_the_child(parent, child):
    out = merge(parent, child, set())
    assert set(out) == set(parent) | set(child)
    for k, v in child.items():
        if not (isinstance(v, (dict, list)) and isinstance(parent.get(k), type(v))):
            assert out[k] == v                       # scalars (and kind changes): the child's
        elif isinstance(v, list):
            assert out[k][:len(parent[k])] == parent[k] and all(x in out[k] for x in v)
    for k in set(parent) - set(child):
        assert out[k] == parent[k]
    assert merge(parent, {}, set()) == parent
    assert merge(parent, child, set(child)) == {**parent, **child}    # replace: the child's whole


macs = st.one_of(st.from_regex(r"\A([0-9a-f]{2}:){5}[0-9a-f]{2}\Z"), st.text(max_size=20))
addresses = st.one_of(st.none(), st.ip_addresses(v=4).map(str), st.text("0123456789.", max_size=16))
hostnames = st.one_of(st.from_regex(r"\A[a-z][a-z0-9-]{0,10}\Z"), st.text(max_size=12))
hosts = st.dictionaries(hostnames, st.fixed_dictionaries(
    {"mac": macs, "recipe": st.sampled_from(["hpc-node", "minimal", "../etc", ""])},
    optional={"address": addresses, "mode": st.sampled_from(["nfs", "iscsi", "tftp", 3])}), max_size=4)


@SETTINGS
@given(entries=hosts)
def test_any_inventory_loads_sound_or_names_its_file(tmp_path, entries):
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump({"hosts": entries}))
    try:
        inv = load_inventory(path)
    except RecipeError as exc:
        assert str(path) in str(exc), str(exc)
        return
    found_macs = [h.mac for h in inv.hosts.values()]
    assert len(set(found_macs)) == len(found_macs)             # no machine twice
    found_addresses = [h.address for h in inv.hosts.values() if h.address]
    assert len(set(found_addresses)) == len(found_addresses)
    for h in inv.hosts.values():
        assert h.address is None or all(0 <= int(o) <= 255 for o in h.address.split("."))
