"""Package names checked against the archive's own indexes, before any stage."""

import lzma

import pytest

from distonet.errors import RecipeError
from distonet.host.archive import bare_name, missing_packages, package_names
from distonet.pipeline import check_packages
from tests.helpers import plan_of, write

PACKAGES = b"""Package: tree
Version: 2.1
Architecture: amd64

Package: openssh-server
Provides: ssh-server
Version: 1

Package: mawk
Provides: awk:any (= 1.3), something-else
"""


def mirror(tmp_path, suite="trixie", comp="main", data=PACKAGES):
    d = tmp_path / "mirror" / "dists" / suite / comp / "binary-amd64"
    d.mkdir(parents=True)
    (d / "Packages.xz").write_bytes(lzma.compress(data))
    return f"file://{tmp_path / 'mirror'}"


def test_names_and_virtual_names_are_read_and_kept(tmp_path):
    url = mirror(tmp_path)
    names = package_names(url, "trixie", "main", "amd64", tmp_path / "cache", "S1")
    assert names == {"tree", "openssh-server", "ssh-server", "mawk", "awk", "something-else"}
    (tmp_path / "mirror/dists/trixie/main/binary-amd64/Packages.xz").unlink()  # offline now
    assert package_names(url, "trixie", "main", "amd64", tmp_path / "cache", "S1") == names
    assert package_names(url, "trixie", "main", "amd64", tmp_path / "cache", "S2") is None


def test_missing_names_with_the_nearest_known_one():
    got = missing_packages({"packages.tools": ["tre", "tree:amd64", "tree=2.1", "zzzz-none"]}, {"tree", "curl"})
    assert got == [("packages.tools", "tre", "tree"), ("packages.tools", "zzzz-none", None)]
    assert bare_name("tree/trixie-backports") == "tree"


def test_check_names_file_key_and_suite(paths, tmp_path, monkeypatch):
    url = mirror(tmp_path, data=PACKAGES + b"\nPackage: linux-image-amd64\n\nPackage: initramfs-tools\n\n"
                 b"Package: systemd\n\nPackage: systemd-sysv\n\nPackage: systemd-resolved\n\nPackage: udev\n\n"
                 b"Package: dbus\n\nPackage: iproute2\n\nPackage: login\n\nPackage: passwd\n\nPackage: less\n")
    write(paths.recipes, "typo", "extends: minimal\npackages: {tools: [tre]}\n")
    plan = plan_of("typo", paths, mirror=url, updates=False, security=False)
    with pytest.raises(RecipeError) as exc:
        check_packages(plan)
    assert str(exc.value) == f"{plan.source}: packages.tools: no package 'tre' in trixie main (did you mean 'tree'?)"
    check_packages(plan_of("minimal", paths, mirror=url, updates=False, security=False))  # all there
