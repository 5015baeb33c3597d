import json
import subprocess

import pytest

from distonet.layout import MIB
from distonet.manifest import Manifest
from tests.integration.conftest import distonet, doit, summary_states

pytestmark = pytest.mark.integration


def test_manifest_lists_every_artifact_and_sha256sum_agrees(minimal_plan):
    out = minimal_plan.out_dir
    m = Manifest.load(out)
    assert m.format_version == 1 and m.recipe == "minimal" and m.build_id == minimal_plan.build_id
    assert m.resolved_recipe["distribution"]["suite"] == "trixie"
    assert m.root_uuid == minimal_plan.root_uuid and f"root=UUID={m.root_uuid}" in m.kernel_cmdline
    kinds = {a.kind: a for a in m.artifacts}
    assert set(kinds) == {"rootfs", "disk", "qcow2", "kernel", "initrd", "sbom"}
    assert kinds["qcow2"].virtual_size == kinds["disk"].size and kinds["qcow2"].format == "qcow2"
    assert kinds["kernel"].version and kinds["kernel"].version == kinds["initrd"].version
    # An independent tool checks the digests: sha256sum, from the SHA256SUMS beside the manifest.
    check = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert len(check.stdout.splitlines()) == 6
    # The SBOM as its own format's library reads it back: valid SPDX, every package, with purls.
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
    doc = parse_file(str(out / "sbom.spdx.json"))
    assert validate_full_spdx_document(doc) == []
    sbom_names = {p.name for p in doc.packages}
    assert {p["name"] for p in m.packages} <= sbom_names
    ssh = next(p for p in doc.packages if p.name == "openssh-server")
    assert ssh.external_references[0].locator.startswith("pkg:deb/debian/openssh-server@")
    assert "BSD" in str(ssh.license_declared) or "LicenseRef" in str(ssh.license_declared)
    names = {p["name"]: p for p in m.packages}
    assert {"systemd", "openssh-server", "linux-image-amd64"} <= set(names)
    assert names["openssh-server"]["source"] == "openssh" and names["systemd"]["architecture"] == "amd64"
    assert [s["name"] for s in m.stages] == [s.name for s in minimal_plan.stages]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".") and p.name != "boot") == sorted(
        [a.path for a in m.artifacts] + ["manifest.json", "SHA256SUMS"])  # nothing it does not describe


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


def debugfs(image, command):
    return subprocess.run(["debugfs", "-R", command, str(image)], capture_output=True, text=True).stdout


def test_sealed_image_ships_no_host_state_and_gets_updates(minimal_plan):
    image = minimal_plan.out_dir / "rootfs.img"
    cat = lambda path: debugfs(image, f"cat {path}")  # noqa: E731
    ls = lambda path: debugfs(image, f"ls {path}").split()  # noqa: E731
    assert "machine-id" in ls("/etc") and cat("/etc/machine-id") == ""
    assert cat("/etc/hostname").strip() == "minimal"
    assert cat("/etc/hosts").splitlines()[1] == "127.0.1.1\tminimal"
    assert "ssh_host_ed25519_key" not in " ".join(ls("/etc/ssh")) and "sshd_config" in ls("/etc/ssh")
    lists = " ".join(ls("/var/lib/apt/lists"))
    assert "_Packages" not in lists and "InRelease" not in lists
    resolv = debugfs(image, "stat /etc/resolv.conf")  # the stub of the image's own resolver, not the host's
    assert "Type: symlink" in resolv and "../run/systemd/resolve/stub-resolv.conf" in resolv
    assert "ssh-keygen -A" in cat("/etc/systemd/system/ssh.service.d/distonet-hostkeys.conf")
    assert cat("/etc/shadow").startswith("root:*:")  # locked by default
    sources = cat("/etc/apt/sources.list")
    for suite in ("trixie", "trixie-updates", "trixie-security"):
        assert f" {suite} main" in sources, sources  # security fixes reach the image with apt
    assert "proxy" not in " ".join(ls("/etc/apt/apt.conf.d")).lower()


def test_noop_rebuild_runs_nothing_with_doit_and_with_distonet(minimal_plan):
    stamps = {s.name: minimal_plan.paths.stages.joinpath(s.key[:32], "stamp.json").stat().st_mtime_ns
              for s in minimal_plan.stages}
    out = minimal_plan.out_dir
    files = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    for proc in (doit("build", "recipe=minimal"), distonet("build", "minimal")):
        states = summary_states(proc.stderr)
        assert states and set(states.values()) == {"cached"}, proc.stderr
        print(f"no-op rebuild: {proc.seconds:.2f}s")
    assert {s.name: minimal_plan.paths.stages.joinpath(s.key[:32], "stamp.json").stat().st_mtime_ns
            for s in minimal_plan.stages} == stamps
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()} == files


def test_boot_reaches_login_with_bios_and_uefi_and_records_it(minimal_build):
    proc = distonet("boot", "minimal")
    assert "disk/bios    reached in" in proc.stderr
    assert "disk/uefi    reached in" in proc.stderr
    from distonet.pipeline import load_plan
    m = Manifest.load(load_plan("minimal").out_dir)
    assert sorted((b.firmware, b.reached) for b in m.boots) == [("bios", True), ("uefi", True)]
    assert all(b.seconds > 0 and b.accel in ("kvm", "tcg") for b in m.boots)


def test_qcow2_boots_sshd_answers_a_key_and_dns_resolves(minimal_build, recipes, tmp_path):
    """DHCP from QEMU's user network, host keys made at first boot, root's key from the recipe,
    sshd reached through a port forwarded to 127.0.0.1 (the path a user's ssh takes), and a name
    resolved through /etc/resolv.conf → systemd-resolved's stub (`_gateway` is answered by
    resolved itself: nothing leaves this machine)."""
    from distonet.boot.qemu import boot_disk
    from tests.integration.conftest import plan_for
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    pub = (tmp_path / "id.pub").read_text().strip()
    (recipes / "sshable.yaml").write_text(f"extends: minimal\nhostname: sshable\naccess: {{ssh_keys: ['{pub}']}}\n"
                                          "replace: [outputs]\noutputs: {qcow2: {}, kernel: {}}\n")
    distonet("build", "sshable", recipes=recipes)
    plan = plan_for("sshable", recipes)
    answers: list[str] = []

    def logged_in(port: int) -> bool:
        proc = subprocess.run(["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no",
                               "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                               "root@127.0.0.1", "hostname; readlink /etc/resolv.conf; getent ahostsv4 _gateway"],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode == 0:
            answers.append(proc.stdout)
        return proc.returncode == 0

    result = boot_disk(plan.out_dir / "disk.qcow2", "uefi", kernel=plan.out_dir / "vmlinuz",
                       name="qcow2/uefi", ssh=True, then=logged_in)
    assert result.reached, result.console[-3000:]
    assert result.ssh_banner.startswith("SSH-2.0-OpenSSH")
    assert "sshable login:" in result.console
    lines = answers[0].splitlines()
    assert lines[0] == "sshable" and lines[1] == "../run/systemd/resolve/stub-resolv.conf", answers[0]
    assert any(l.startswith("10.0.2.2 ") for l in lines[2:]), answers[0]
    distonet("clean", "sshable", recipes=recipes)


def test_invalid_recipe_fails_before_any_work(recipes, project_paths):
    (recipes / "broken.yaml").write_text("extends: minimal\npakages: {x: [y]}\n")
    for proc in (doit("build", "recipe=broken", recipes=recipes, check=False),
                 distonet("build", "broken", recipes=recipes, check=False)):
        assert proc.returncode == 2
        assert "broken.yaml: pakages: unknown key; did you mean 'packages'?" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (project_paths.output / "broken").exists()
