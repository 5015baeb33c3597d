"""`distonet verify`: the checks that prove a store and an output folder sound, on small trees."""

import hashlib
import json

from distonet.manifest import Artifact, Manifest
from distonet.paths import Paths
from distonet.verify import Report, _check_lists, verify_outputs, verify_store


def dpkg_tree(root, files: dict[str, bytes], listed: list[str], diversions: str = "", excludes: str = ""):
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (info / "pkg.list").write_text("/.\n/usr\n" + "".join(f"{p}\n" for p in listed))
    (info / "pkg.md5sums").write_text("".join(f"{hashlib.md5(d).hexdigest()}  {r}\n" for r, d in files.items()))
    (root / "var/lib/dpkg/diversions").write_text(diversions)
    if excludes:
        (root / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True)
        (root / "etc/dpkg/dpkg.cfg.d/excludes").write_text(excludes)
    return sorted(info.glob("*.list"))


def test_a_listed_file_that_is_missing_is_named(tmp_path):
    lists = dpkg_tree(tmp_path, {"usr/bin/x": b"x"}, ["/usr/bin/x", "/usr/bin/y"])
    assert _check_lists(tmp_path, lists, content=False) == ["package pkg: 1 file(s) missing, e.g. /usr/bin/y"]


def test_diverted_and_excluded_paths_are_looked_for_where_dpkg_put_them(tmp_path):
    lists = dpkg_tree(tmp_path, {"usr/bin/x.distrib": b"x"}, ["/usr/bin/x", "/usr/share/doc/pkg/README"],
                      diversions="/usr/bin/x\n/usr/bin/x.distrib\nother\n",
                      excludes="path-exclude=/usr/share/doc/*\n")
    assert _check_lists(tmp_path, lists, content=True) == []


def test_content_catches_a_changed_file(tmp_path):
    lists = dpkg_tree(tmp_path, {"usr/bin/x": b"x"}, ["/usr/bin/x"])
    (tmp_path / "usr/bin/x").write_bytes(b"tampered")
    assert _check_lists(tmp_path, lists, content=False) == []
    assert _check_lists(tmp_path, lists, content=True) == [
        "package pkg: 1 file(s) differ from dpkg's md5sums, e.g. /usr/bin/x"]


def store_entry(stages, key, parents, tree=True, stamp=True):
    d = stages / key[:32]
    d.mkdir(parents=True)
    if tree:
        (d / "tree").mkdir()
    if stamp:
        (d / "stamp.json").write_text(json.dumps({"stage": "s", "key": key, "parents": parents}))


def test_store_problems_and_leftovers_are_told_apart(tmp_path):
    paths = Paths(recipes=tmp_path, cache=tmp_path / "cache", output=tmp_path / "output")
    a, b, c, d = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
    store_entry(paths.stages, a, [])                    # sound
    store_entry(paths.stages, b, ["e" * 64])            # its parent is gone
    store_entry(paths.stages, c, [a], tree=False)       # stamped, no tree
    store_entry(paths.stages, d, [a], stamp=False)      # never committed
    (paths.stages / f"{'f' * 32}.partial-999999").mkdir()
    r = Report()
    verify_store(paths, r)
    assert len(r.checked) == 1 and not r.sound
    assert any("built on eeeeeeeeeeee" in p for p in r.problems)
    assert any("its tree is missing" in p for p in r.problems)
    assert len(r.leftovers) == 2


def test_an_artifact_changed_after_the_build_is_unsound(tmp_path):
    paths = Paths(recipes=tmp_path, cache=tmp_path / "cache", output=tmp_path / "output")
    build = paths.output / "r"
    build.mkdir(parents=True)
    (build / "rootfs.img").write_bytes(b"image")
    m = Manifest(recipe="r", build_id="1-2", built_at="", distonet_version="0", resolved_recipe={}, mirror="",
                 archive_state="", root_uuid="", kernel_cmdline=[], stages=[], outputs=[], packages=[],
                 artifacts=[Artifact.of("rootfs", build / "rootfs.img", build)])
    m.save(build)
    r = Report()
    verify_outputs(paths, r)
    assert r.sound and len(r.checked) == 1
    (build / "rootfs.img").write_bytes(b"imagf")
    r = Report()
    verify_outputs(paths, r)
    assert r.problems == ["r build 1-2: rootfs.img does not match its SHA-256"]


def test_a_package_that_diverts_a_path_keeps_its_own_file_there(tmp_path):
    # dash diverts /bin/sh away from other packages, and ships /bin/sh itself; the usr-merge
    # diversions name targets that never exist
    lists = dpkg_tree(tmp_path, {"bin/sh": b"dash", "lib64/ld.so": b"ld", "usr/x": b""}, ["/bin/sh", "/lib64/ld.so"],
                      diversions="/bin/sh\n/bin/sh.distrib\ndash\n/lib64/ld.so\n/lib64/ld.so.usr-is-merged\nlibc6\n")
    assert _check_lists(tmp_path, lists, content=True) == []
