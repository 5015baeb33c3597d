import json
import subprocess

import pytest

from distonet.layout import MIB
from distonet.manifest import sha256_file
from tests.integration.conftest import doit

pytestmark = pytest.mark.integration


def test_manifest_lists_every_artifact_with_size_and_checksum(minimal_plan):
    out = minimal_plan.out_dir
    data = json.loads((out / "manifest.json").read_text())
    assert data["recipe"] == "minimal" and data["build_id"]
    assert data["resolved_recipe"]["distribution"]["suite"] == "trixie"
    kinds = {a["kind"]: a for a in data["artifacts"]}
    assert set(kinds) == {"rootfs", "disk", "qcow2", "kernel", "initrd"}
    for art in data["artifacts"]:
        path = out / art["path"]
        assert path.stat().st_size == art["size"] > 0
        assert sha256_file(path) == art["sha256"]
    assert kinds["rootfs"]["path"] == "rootfs.img" and kinds["disk"]["path"] == "disk.raw"
    names = {p["name"]: p for p in data["packages"]}
    assert {"systemd", "openssh-server", "linux-image-amd64"} <= set(names)
    assert names["openssh-server"]["version"] and names["systemd"]["architecture"] == "amd64"
    assert [s["name"] for s in data["stages"]] == [s.name for s in minimal_plan.stages]
    assert all(s["seconds"] >= 0 for s in data["stages"])


def test_rootfs_is_clean_ext4_in_whole_extents_with_free_space(minimal_plan):
    image = minimal_plan.out_dir / "rootfs.img"
    extent = minimal_plan.recipe.outputs.rootfs.extent_mib * MIB
    assert image.stat().st_size % extent == 0
    assert subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True).returncode == 0
    header = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in header.splitlines() if ":" in line)
    free = int(fields["Free blocks"]) * int(fields["Block size"])
    assert free >= minimal_plan.recipe.outputs.rootfs.free_mib * MIB * 0.9
    assert fields["Filesystem UUID"].strip() == minimal_plan.root_uuid


def test_sealed_image_ships_no_host_state(minimal_plan):
    image = str(minimal_plan.out_dir / "rootfs.img")

    def cat(path):
        return subprocess.run(["debugfs", "-R", f"cat {path}", image], capture_output=True, text=True).stdout

    def ls(path):
        return subprocess.run(["debugfs", "-R", f"ls {path}", image], capture_output=True, text=True).stdout

    assert cat("/etc/machine-id") == ""
    assert cat("/etc/hostname").strip() == "minimal"
    assert "ssh_host_" not in ls("/etc/ssh")
    assert "_Packages" not in ls("/var/lib/apt/lists") and "InRelease" not in ls("/var/lib/apt/lists")
    assert "resolv.conf" not in ls("/etc").split()
    assert "ssh-keygen -A" in cat("/etc/systemd/system/ssh.service.d/distonet-hostkeys.conf")
    assert cat("/etc/shadow").startswith("root:*:")  # locked by default


def test_noop_rebuild_runs_no_stage(minimal_plan):
    stamps = {s.name: minimal_plan.stamp(s).stat().st_mtime_ns for s in minimal_plan.stages}
    outputs = {p.name: p.stat().st_mtime_ns for p in minimal_plan.out_dir.iterdir() if p.is_file()}
    proc = doit("build", "recipe=minimal")
    summary = proc.stderr[proc.stderr.index("stage "):]
    rows = [line.split() for line in summary.splitlines()[2:] if line.strip()]
    assert rows and all(row[-1] == "cached" for row in rows), summary
    assert {s.name: minimal_plan.stamp(s).stat().st_mtime_ns for s in minimal_plan.stages} == stamps
    assert {p.name: p.stat().st_mtime_ns for p in minimal_plan.out_dir.iterdir() if p.is_file()} == outputs
    print(f"no-op rebuild: {proc.seconds:.2f}s")


def test_doit_boot_reaches_login_with_bios_and_uefi(minimal_build):
    proc = doit("boot", "recipe=minimal")
    assert "disk/bios    reached in" in proc.stderr
    assert "disk/uefi    reached in" in proc.stderr


def test_qcow2_boots_to_login_and_sshd_answers_with_fresh_host_keys(minimal_plan):
    """DHCP from QEMU's user network, host keys made at first boot, sshd reachable through a
    port forwarded to 127.0.0.1: the path a user's ssh takes."""
    from distonet.boot.qemu import boot_disk
    result = boot_disk(minimal_plan.out_dir / "disk.qcow2", "uefi", kernel=minimal_plan.out_dir / "vmlinuz",
                       name="qcow2/uefi", ssh=True)
    assert result.reached, result.console[-3000:]
    assert result.ssh_banner.startswith("SSH-2.0-OpenSSH")
    assert "minimal login:" in result.console


def test_invalid_recipe_fails_before_any_work(recipes, project_paths):
    (recipes / "broken.yaml").write_text("extends: minimal\npakages: {x: [y]}\n")
    proc = doit("build", "recipe=broken", recipes=recipes, check=False)
    assert proc.returncode != 0
    assert "broken.yaml: pakages: unknown key; did you mean 'packages'?" in proc.stderr
    assert not (project_paths.output / "broken").exists()
