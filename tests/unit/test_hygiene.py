"""Image hygiene: a sealed tree passes; each way a build host or a secret leaks is named."""

import json
import os

from distonet.hygiene import check_artifacts, check_sbom, check_tree, sshd_password_login
from distonet.manifest import Artifact
from distonet.stages.seal import seal_tree
from tests.recording import RecordingRunner
from tests.unit.test_seal import INPUTS, make_tree

RECIPE = {"hostname": "node", "access": {"root_password_hash": None, "ssh_keys": []}}


def sealed(root, access=None):
    make_tree(root)
    (root / "etc/shadow").write_text("root:*:20000:0:99999:7:::\n")
    (root / "etc/shadow").chmod(0o640)
    seal_tree(root, {**INPUTS, "access": access or INPUTS["access"]}, RecordingRunner())
    return root


def test_a_sealed_tree_is_clean_and_sshd_takes_keys_only(tmp_path):
    root = sealed(tmp_path)
    assert check_tree(root, RECIPE) == []
    assert sshd_password_login(root) is False


def test_the_recipe_may_open_ssh_passwords(tmp_path):
    root = sealed(tmp_path, {**INPUTS["access"], "ssh_password_login": True})
    assert sshd_password_login(root) is True          # Debian's default, left alone
    assert check_tree(root, {**RECIPE, "access": {"ssh_password_login": True}}) == []
    assert any("sshd accepts passwords" in p for p in check_tree(root, RECIPE))


def test_every_leak_is_named(tmp_path):
    root = sealed(tmp_path)
    (root / "etc/machine-id").write_text("0123456789abcdef\n")
    (root / "etc/ssh/ssh_host_rsa_key").write_text("k")
    (root / "etc/apt/apt.conf.d/99proxy").write_text('Acquire::http::Proxy "http://proxy.invalid:3142";\n')
    (root / "etc/apt/auth.conf").write_text("machine archive.invalid login u password p\n")
    (root / "etc/shadow").write_text("root:$6$salt$abcdefgh:20000:0:99999:7:::\n")
    (root / "etc/shadow").chmod(0o644)
    (root / "etc/hostname").write_text("other\n")
    (root / "root").mkdir(exist_ok=True)
    (root / "root/key.pem").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n")
    (root / "etc/ssh/sshd_config.d/00-distonet.conf").unlink()
    problems = "\n".join(check_tree(root, RECIPE))
    for said in ["machine-id is not empty", "ssh host keys", "apt proxy", "archive credentials",
                 "root has a password the recipe did not give", "etc/hostname is 'other'",
                 "etc/shadow is world-readable", "root/key.pem holds a secret", "sshd accepts passwords"]:
        assert said in problems, said
    (root / "etc/shadow").write_text("root::20000:0:99999:7:::\n")
    assert "root has an empty password" in "\n".join(check_tree(root, RECIPE))


def test_the_sbom_must_name_exactly_the_installed_packages(tmp_path):
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text(
        "Package: a\nStatus: install ok installed\nVersion: 1\n\nPackage: b\nStatus: deinstall ok config-files\n"
        "Version: 2\n\nPackage: c\nStatus: install ok installed\nVersion: 3\n")
    sbom = tmp_path / "sbom.json"
    packages = [{"SPDXID": "SPDXRef-Image", "name": "r"}, {"SPDXID": "x-a", "name": "a", "versionInfo": "1"}]
    sbom.write_text(json.dumps({"packages": packages}))
    assert check_sbom(tmp_path, sbom) == ["the SBOM lacks 1 installed package(s), e.g. ('c', '3')"]
    packages.append({"SPDXID": "x-c", "name": "c", "versionInfo": "3"})
    sbom.write_text(json.dumps({"packages": packages}))
    assert check_sbom(tmp_path, sbom) == []


def test_secrets_beside_the_image_stay_private_and_the_root_export_read_only(tmp_path):
    (tmp_path / "config/tgt").mkdir(parents=True)
    (tmp_path / "config/tgt/r.conf").write_text("<target x>\n    incominguser r s3cret\n</target>\n")
    (tmp_path / "config/exports").write_text("/srv/distonet/r *(rw,no_root_squash)\n"
                                             "/srv/distonet/layers/r *(rw,no_root_squash)\n")
    arts = [Artifact("config", "config/tgt/r.conf", 1, ""), Artifact("config", "config/exports", 1, "")]
    problems = check_artifacts(tmp_path, arts, {"netboot": {}}, "r")
    assert problems == ["config/tgt/r.conf holds a secret and is world-readable",
                        "config/exports: /srv/distonet/r is not exported read-only"]
    os.chmod(tmp_path / "config/tgt/r.conf", 0o600)
    (tmp_path / "config/exports").write_text("/srv/distonet/r *(ro,no_root_squash)\n")
    assert check_artifacts(tmp_path, arts, {"netboot": {}}, "r") == []
