"""Site overlays: rendering, metadata, keys, and every way out of the image refused."""

import os
import stat
from pathlib import Path

import pytest

from distonet import render
from distonet.errors import BuildError, RecipeError
from distonet.imagefs import ids, link_target_ok, resolve_in
from distonet.stages.overlay import write_entry
from tests.helpers import keys, write


def overlay(tmp_path, files: dict[str, str], meta: str | None = None, name="site") -> Path:
    root = tmp_path / "overlays" / name
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    root.mkdir(parents=True, exist_ok=True)
    if meta is not None:
        (tmp_path / "overlays" / f"{name}.meta.yaml").write_text(meta)
    return root


def image(tmp_path) -> Path:
    root = tmp_path / "image"
    (root / "etc").mkdir(parents=True)
    (root / "usr/lib").mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\ndemo:x:1000:1000::/home/demo:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nstaff:x:50:\ndemo:x:1000:\n")
    return root


def rendered(src, variables, meta_file=None):
    meta = render.load_meta(meta_file) if meta_file else render.OverlayMeta()
    return {r.path: r for r in render.render(src, render.scan(src, meta_file), meta, variables)}


def test_templates_render_files_copy_and_suffix_drops(tmp_path):
    src = overlay(tmp_path, {"etc/motd.j2": "Hello {{ site_name }} from {{ distonet.recipe }}\n", "etc/plain": "as is {{ x }}\n"})
    out = rendered(src, {"site_name": "Lab", "distonet": {"recipe": "r"}})
    assert out["etc/motd"].data == b"Hello Lab from r\n" and out["etc/motd"].source == "etc/motd.j2"
    assert out["etc/plain"].data == b"as is {{ x }}\n"  # only .j2 files are templates
    assert out["etc"].kind == "dir" and out["etc"].mode == 0o755


def test_an_undefined_variable_names_template_line_and_variable(tmp_path):
    src = overlay(tmp_path, {"etc/a.j2": "line one\n{{ site.name }}\n{{ missing_var }}\n"})
    entries = render.scan(src)
    with pytest.raises(RecipeError) as exc:  # at plan time, before any work
        render.check_variables(src, entries, {"site"})
    assert str(exc.value).startswith(f"{src}/etc/a.j2:3: undefined variable 'missing_var'")
    with pytest.raises(RecipeError) as exc:  # an attribute only rendering can find
        render.render(src, entries, render.OverlayMeta(), {"site": {}, "missing_var": 1})
    assert f"{src}/etc/a.j2:2:" in str(exc.value) and "'dict object' has no attribute 'name'" in str(exc.value)


def test_the_sandbox_refuses_unsafe_template_code(tmp_path):
    src = overlay(tmp_path, {"x.j2": "{{ ''.__class__.__mro__ }}"})
    with pytest.raises(RecipeError, match="x.j2:1: refused by the template sandbox|x.j2:1:"):
        render.render(src, render.scan(src), render.OverlayMeta(), {})


def test_metadata_sets_owner_group_and_mode(tmp_path):
    src = overlay(tmp_path, {"etc/sudoers.d/lab": "x\n", "home/demo/.profile.j2": "{{ a }}\n"},
                  meta="defaults: {owner: root, group: staff}\nfiles:\n  etc/sudoers.d/lab: {mode: '0440'}\n"
                       "  home/demo/.profile: {owner: demo, group: demo, mode: '0600'}\n")
    out = rendered(src, {"a": 1}, tmp_path / "overlays/site.meta.yaml")
    assert (out["etc/sudoers.d/lab"].mode, out["etc/sudoers.d/lab"].owner, out["etc/sudoers.d/lab"].group) == (0o440, "root", "staff")
    assert (out["home/demo/.profile"].owner, out["home/demo/.profile"].mode) == ("demo", 0o600)
    img = image(tmp_path)
    for item in out.values():
        write_entry(img, item, "site")
    st = os.stat(img / "home/demo/.profile")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o600)
    assert os.stat(img / "etc/sudoers.d/lab").st_gid == 50


def test_bad_metadata_names_the_file_and_key(tmp_path):
    overlay(tmp_path, {"a": ""}, meta="files:\n  a: {mode: 'rwx'}\n")
    with pytest.raises(RecipeError, match=r"site.meta.yaml: files.a.mode: string should match"):
        render.load_meta(tmp_path / "overlays/site.meta.yaml")


def test_an_unknown_owner_is_named(tmp_path):
    img = image(tmp_path)
    with pytest.raises(BuildError, match="no user 'nobody2'"):
        ids(img, "nobody2", "passwd")


def test_setuid_needs_the_metadatas_consent(tmp_path):
    src = overlay(tmp_path, {"usr/bin/tool": "#!/bin/sh\n"})
    os.chmod(src / "usr/bin/tool", 0o4755)
    with pytest.raises(RecipeError, match="setuid or setgid file in an overlay"):
        render.scan(src)
    meta_file = tmp_path / "overlays/site.meta.yaml"
    meta_file.write_text("files:\n  usr/bin/tool: {setuid: true}\n")
    assert rendered(src, {}, meta_file)["usr/bin/tool"].mode == 0o4755
    meta_file.write_text("files:\n  usr/bin/tool: {mode: '4755'}\n")
    os.chmod(src / "usr/bin/tool", 0o755)
    with pytest.raises(RecipeError, match="sets setuid"):
        rendered(src, {}, meta_file)


def test_device_nodes_and_fifos_are_refused(tmp_path):
    src = overlay(tmp_path, {"a": ""})
    os.mkfifo(src / "pipe")
    with pytest.raises(RecipeError, match="device nodes, fifos and sockets"):
        render.scan(src)


def test_symlinks_are_kept_and_one_leading_outside_is_refused(tmp_path):
    src = overlay(tmp_path, {"etc/x": ""})
    (src / "etc/abs").symlink_to("/usr/share/zoneinfo/UTC")       # the image's own path: fine
    (src / "etc/rel").symlink_to("../usr/lib")                    # inside: fine
    (src / "etc/out").symlink_to("../../../../etc/shadow")        # above the image root: refused
    out = rendered(src, {})
    img = image(tmp_path)
    write_entry(img, out["etc"], "site")
    write_entry(img, out["etc/abs"], "site")
    write_entry(img, out["etc/rel"], "site")
    assert os.readlink(img / "etc/abs") == "/usr/share/zoneinfo/UTC"
    with pytest.raises(BuildError, match="leads outside the image"):
        write_entry(img, out["etc/out"], "site")
    assert link_target_ok("etc/a", "/anything") and not link_target_ok("a", "../b")


def test_a_link_in_the_image_never_redirects_a_write_outside(tmp_path):
    img = image(tmp_path)
    outside = tmp_path / "host-secret"
    outside.mkdir()
    (img / "etc/evil").symlink_to("../../../../../" + str(outside).lstrip("/"))   # relative, escaping
    (img / "etc/abs-evil").symlink_to(str(outside))                                 # absolute: the image's path
    (img / "etc/final").symlink_to("/etc/passwd")
    with pytest.raises(BuildError, match="leads above its root"):
        resolve_in(img, "etc/evil/file")
    assert resolve_in(img, "etc/abs-evil/file") == img / str(outside).lstrip("/") / "file"  # stays inside
    assert resolve_in(img, "lib/systemd/x") == img / "usr/lib/systemd/x"  # merged /usr works
    item = render.Rendered("etc/final", "file", b"x", 0o644, "0", "0", "etc/final")
    with pytest.raises(BuildError, match="symbolic link in the image; writing through it is refused"):
        write_entry(img, item, "site")
    assert list(outside.iterdir()) == []


def test_writes_through_merged_usr_land_in_usr(tmp_path):
    src = overlay(tmp_path, {"lib/systemd/system/site.service": "[Unit]\n"})
    img = image(tmp_path)
    for item in rendered(src, {}).values():
        write_entry(img, item, "site")
    assert (img / "usr/lib/systemd/system/site.service").read_text() == "[Unit]\n"
    assert (img / "lib").is_symlink()


def test_a_template_change_rekeys_only_its_overlay_and_what_follows(paths, tmp_path, monkeypatch):
    from tests.helpers import plan_of
    root = paths.recipes.parent
    for name, text in (("one", "{{ a }}\n"), ("two", "{{ b }}\n")):
        (root / "overlays" / name / "etc").mkdir(parents=True)
        (root / "overlays" / name / "etc" / f"{name}.j2").write_text(text)
    write(paths.recipes, "o", "extends: minimal\noverlays: [one, two]\nvars: {a: 1, b: 2, unused: 3}\n")
    from distonet.pipeline import overlay_facts
    from distonet.recipe import load_recipe

    def plan():
        r = load_recipe("o", paths.search)
        return plan_of("o", paths, overlays=overlay_facts(r, paths, None))
    before = keys(plan())
    assert list(before)[4:] == ["overlay.one", "overlay.two", "seal"]
    (root / "overlays/two/etc/two.j2").write_text("{{ b }} changed\n")
    after = keys(plan())
    assert [n for n in before if before[n] != after[n]] == ["overlay.two", "seal"]
    write(paths.recipes, "o", "extends: minimal\noverlays: [one, two]\nvars: {a: 1, b: 2, unused: 4}\n")
    assert keys(plan()) == after  # a variable no template reads changes nothing
    write(paths.recipes, "o", "extends: minimal\noverlays: [one, two]\nvars: {a: 5, b: 2}\n")
    changed = keys(plan())
    assert [n for n in after if after[n] != changed[n]] == ["overlay.one", "overlay.two", "seal"]


def test_unknown_overlay_and_undefined_variable_fail_the_plan(paths):
    from distonet.pipeline import overlay_facts
    from distonet.recipe import load_recipe
    (paths.recipes.parent / "overlays/site/etc").mkdir(parents=True)
    (paths.recipes.parent / "overlays/site/etc/motd.j2").write_text("{{ nope }}\n")
    write(paths.recipes, "u", "extends: minimal\noverlays: [sitte]\n")
    with pytest.raises(RecipeError, match="no overlay 'sitte' .* \\(did you mean 'site'\\?\\)"):
        overlay_facts(load_recipe("u", paths.search), paths, None)
    write(paths.recipes, "v", "extends: minimal\noverlays: [site]\n")
    with pytest.raises(RecipeError, match="motd.j2:1: undefined variable 'nope'"):
        overlay_facts(load_recipe("v", paths.search), paths, None)


def test_the_shipped_example_site_renders(monkeypatch):
    from distonet.paths import Paths
    from distonet.pipeline import overlay_facts
    from distonet.recipe import load_recipe
    paths = Paths.default()
    facts = overlay_facts(load_recipe("example-site", paths.search), paths, "example")
    assert facts["lab-base"]["vars"]["site_name"] == "Example Lab"


def test_a_hard_link_to_a_host_file_is_refused_and_one_within_the_overlay_kept(tmp_path):
    src = overlay(tmp_path, {"etc/a": "a\n"})
    os.link(src / "etc/a", src / "etc/b")                          # both names inside: fine
    assert {"etc/a", "etc/b"} <= set(rendered(src, {}))
    host = tmp_path / "host-secret"
    host.write_text("secret\n")
    os.link(host, src / "etc/leak")
    with pytest.raises(RecipeError, match="etc/leak: a hard link to a file outside the overlay"):
        render.scan(src)


def test_a_file_too_big_for_an_overlay_is_refused_before_it_is_read(tmp_path, monkeypatch):
    src = overlay(tmp_path, {"small": "x"})
    with open(src / "sparse.img", "wb") as fh:                     # sparse: costs no disk
        fh.truncate(render.MAX_FILE_BYTES + 1)
    with pytest.raises(RecipeError, match="sparse.img: 512 MiB, more than an overlay file may be"):
        render.scan(src)


@pytest.mark.parametrize("include", ["leak", "../../host-secret", "/etc/hostname", "sub/../../host-secret"])
def test_a_template_cannot_read_outside_its_overlay(tmp_path, include):
    (tmp_path / "host-secret").write_text("s3cr3t-content\n")
    src = overlay(tmp_path, {"x.j2": f"{{% include '{include}' %}}"})
    (src / "leak").symlink_to(tmp_path / "host-secret")
    with pytest.raises(RecipeError, match="x.j2:1: no template") as exc:
        render.render(src, render.scan(src), render.OverlayMeta(), {})
    assert "s3cr3t-content" not in str(exc.value)


@pytest.mark.parametrize("code", ["{{ self.__init__.__globals__ }}", "{{ cycler.__init__.__globals__.os.environ }}",
                                  "{{ lipsum.__globals__['os'].environ }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}",
                                  "{{ range.__self__ }}", "{{ config }}"])
def test_templates_reach_neither_python_internals_nor_the_environment(tmp_path, code, monkeypatch):
    monkeypatch.setenv("DISTONET_TEST_SECRET", "hunter2")
    src = overlay(tmp_path, {"x.j2": code})
    try:
        out = render.render(src, render.scan(src), render.OverlayMeta(), {})
    except RecipeError as exc:
        assert "x.j2:1:" in str(exc) and "hunter2" not in str(exc)
    else:
        assert b"hunter2" not in out[0].data and b"environ" not in out[0].data
