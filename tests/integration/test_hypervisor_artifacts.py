"""The hypervisor artifacts of recipes/vm.yaml (minimal plus xen, libvirt, ova, netboot-ova,
squashfs and iso outputs), each checked by a real consumer: Xen's parser (libxlutil), libvirt's
schema, virt-v2v's OVA reader and the Common OVF Tool, unsquashfs; the OVA's disk booted as
VirtualBox attaches it (SATA, BIOS), the Xen PVH domain as dom0 starts it, and the live ISO
from a CD with BIOS and UEFI and with its root copied into RAM."""

import io
import json
import subprocess
import sys
import tarfile
from functools import partial
from pathlib import Path

import pytest

from tests.integration.conftest import doit, leftovers

pytestmark = pytest.mark.integration

KINDS = {"xen", "libvirt", "ova", "netboot-ova", "squashfs", "iso"}
COT = str(Path(sys.executable).parent / "cot")   # pip-installed beside pytest (.[test])


@pytest.fixture(scope="module")
def vm(minimal_build):
    from distonet.pipeline import load_plan
    doit("build", "recipe=vm")
    load_plan.cache_clear()
    return load_plan("vm")


def artifact(plan, kind):
    m = json.loads((plan.out_dir / "manifest.json").read_text())
    (path,) = [a["path"] for a in m["artifacts"] if a["kind"] == kind]
    return plan.out_dir / path


def test_the_manifest_lists_every_hypervisor_artifact(vm):
    m = json.loads((vm.out_dir / "manifest.json").read_text())
    assert KINDS <= {a["kind"] for a in m["artifacts"]}
    sums = (vm.out_dir / "SHA256SUMS").read_text()
    assert all(artifact(vm, k).name in sums for k in KINDS)


def test_consumers_accept_them(vm):
    from distonet import xl
    cfg = xl.parse(artifact(vm, "xen"), strings=("name", "type", "kernel", "ramdisk", "cmdline"),
                   longs=("memory", "vcpus"), lists=("disk", "vif"))
    assert cfg["type"] == "pvh" and cfg["cmdline"].endswith("console=hvc0")
    subprocess.run(["virt-xml-validate", str(artifact(vm, "libvirt")), "domain"], check=True, capture_output=True)
    ova = artifact(vm, "ova")
    source = subprocess.run(["virt-v2v", "-i", "ova", str(ova), "--print-source"], capture_output=True,
                            text=True, check=True).stdout
    assert "source name: vm" in source and "memory: 2147483648" in source and "nr vCPUs: 2" in source
    assert "0 [sata]" in source and "[e1000]" in source
    cot = subprocess.run([COT, "info", str(ova)], capture_output=True, text=True, check=True).stdout
    assert "vm-disk1.vmdk" in cot and "virtualbox-2.2" in cot and "harddisk @ SATA 0:0" in cot
    net = subprocess.run([COT, "info", str(artifact(vm, "netboot-ova"))], capture_output=True,
                         text=True, check=True).stdout
    assert "0 /       0 B" in net and "Bridged" in net
    listing = subprocess.run(["unsquashfs", "-l", str(artifact(vm, "squashfs"))], capture_output=True,
                             text=True, check=True).stdout
    assert "squashfs-root/etc/os-release" in listing


def test_a_tampered_ova_is_refused_by_its_consumers(vm, tmp_path):
    src, bad = artifact(vm, "ova"), tmp_path / "bad.ova"
    with tarfile.open(src) as tar, tarfile.open(bad, "w", format=tarfile.USTAR_FORMAT) as out:
        for m in tar:
            data = tar.extractfile(m).read()
            if m.name.endswith(".ovf"):
                data = data.replace(b"<rasd:VirtualQuantity>2048<", b"<rasd:VirtualQuantity>4096<")
            m.size = len(data)
            out.addfile(m, io.BytesIO(data))
    v2v = subprocess.run(["virt-v2v", "-i", "ova", str(bad), "--print-source"], capture_output=True, text=True)
    assert v2v.returncode != 0 and "does not match manifest" in v2v.stdout + v2v.stderr


def test_the_ova_disk_and_the_xen_domain_boot_to_login(vm):
    from distonet.boot.parallel import side_by_side
    from distonet.boot.hypervisors import boot_ova, boot_xen
    ova, xen = side_by_side(partial(boot_ova, vm, artifact(vm, "ova")), partial(boot_xen, vm, artifact(vm, "xen")))
    assert ova.reached, ova.console[-3000:]
    assert "ahci" in ova.console and "sda" in ova.console          # VirtualBox's SATA port
    assert xen.reached, xen.console[-3000:]
    assert "console=hvc0" in xen.console and "vda" in xen.console   # the config's command line, the root image
    assert leftovers(vm.paths) == []


def test_the_live_iso_boots_to_login_with_bios_and_uefi(vm):
    """From a CD: ISOLINUX (BIOS) or GRUB (UEFI) -> the initrd finds the ISO by its label ->
    root.squashfs under a tmpfs layer. (`doit boot` also boots it as a stick, through its
    isohybrid MBR, and with its root copied into RAM.)"""
    from distonet.boot.hypervisors import boot_iso
    from distonet.boot.parallel import side_by_side
    iso = artifact(vm, "iso")
    for r in side_by_side(partial(boot_iso, vm, iso, "bios", "cdrom"), partial(boot_iso, vm, iso, "uefi", "cdrom")):
        assert r.reached, r.console[-3000:]
        assert "distonet live: root = /live/root.squashfs from VM" in r.console
        assert "writable layer on tmpfs" in r.console and "FAILED" not in r.console
    assert leftovers(vm.paths) == []
