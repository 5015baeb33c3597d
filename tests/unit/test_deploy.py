"""deploy-lvm: the command sequence, the size check, the verified copy, nothing half-written."""

import hashlib
import json

import pytest

from distonet.deploy import copy_verify, deploy_lvm
from distonet.errors import BuildError
from distonet.manifest import FORMAT_VERSION
from tests.recording import RecordingRunner


def make_manifest(tmp_path, data: bytes):
    img = tmp_path / "rootfs.img"
    img.write_bytes(data)
    art = {"kind": "rootfs", "path": "rootfs.img", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    m = {"format_version": FORMAT_VERSION, "recipe": "r", "build_id": "b", "built_at": "t", "distonet_version": "0",
         "resolved_recipe": {}, "mirror": "", "archive_state": "", "root_uuid": "", "kernel_cmdline": [],
         "stages": [], "outputs": [], "packages": [], "artifacts": [art]}
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    return tmp_path / "manifest.json", img


def test_deploy_lvm_command_sequence(tmp_path, monkeypatch):
    manifest, img = make_manifest(tmp_path, b"x" * 8192)
    copied = []
    monkeypatch.setattr("distonet.deploy.copy_verify", lambda *a, **k: copied.append(a[:4]))
    runner = RecordingRunner({"blockdev": "8192\n"})
    target = deploy_lvm(manifest, "vg0", "node1", runner)
    assert runner.calls[0] == ("lvcreate", "--yes", "--wipesignatures", "y", "--size", "8192b", "--name", "node1", "vg0")
    assert runner.calls[1] == ("blockdev", "--getsize64", "/dev/vg0/node1")
    assert str(target) == "/dev/vg0/node1" and copied[0] == (img.resolve(), target, 8192,
                                                             hashlib.sha256(b"x" * 8192).hexdigest())


def test_a_wrong_sized_lv_is_refused_and_removed(tmp_path):
    manifest, _ = make_manifest(tmp_path, b"x" * 8192)
    runner = RecordingRunner({"blockdev": "12288\n"})
    with pytest.raises(BuildError, match="extent"):
        deploy_lvm(manifest, "vg0", "n", runner)
    assert runner.calls[-1] == ("lvremove", "--yes", "vg0/n")


def test_dry_run_runs_nothing(tmp_path):
    manifest, _ = make_manifest(tmp_path, b"x" * 4096)
    runner = RecordingRunner()
    deploy_lvm(manifest, "vg0", "n", runner, dry_run=True)
    assert runner.calls == []


def test_copy_verify_against_a_plain_file(tmp_path):
    manifest, img = make_manifest(tmp_path, bytes(range(256)) * 64)
    target = tmp_path / "lv"
    target.write_bytes(b"\xff" * (len(img.read_bytes()) + 4096))  # an LV can be larger
    data = json.loads(manifest.read_text())["artifacts"][0]
    copy_verify(img, target, data["size"], data["sha256"])
    assert target.read_bytes()[: data["size"]] == img.read_bytes()
    with pytest.raises(BuildError, match="does not match its manifest"):
        copy_verify(img, target, data["size"], "0" * 64)  # a changed source is never copied


def test_a_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(BuildError, match="no manifest"):
        deploy_lvm(tmp_path / "nope" / "manifest.json", "vg", "lv", RecordingRunner())
