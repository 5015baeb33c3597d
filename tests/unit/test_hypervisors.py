"""Hypervisor artifacts: the xl config through Xen's own parser (libxlutil), the OVA's envelope
against OVF 1.0's rules and VirtualBox's conventions, its manifest and archive order, the
netboot OVA, and the harness's reading of an OVA."""

import hashlib
import io
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from distonet import xl
from distonet.boot.hypervisors import ova_disk
from distonet.errors import BuildError
from distonet.manifest import Artifact
from distonet.outputs import REGISTRY
from distonet.outputs.ova import VMDK_STREAM
from distonet.outputs.xen import XenOptions, domain_cfg
from tests.helpers import plan_of, write
from tests.recording import RecordingRunner
from tests.unit.test_outputs import ctx_for

NS = {"ovf": "http://schemas.dmtf.org/ovf/envelope/1",
      "rasd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData",
      "vssd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData",
      "vbox": "http://www.virtualbox.org/ovf/machine"}
CMDLINE = ("root=UUID=0b2d", "ro", "console=tty0", "console=ttyS0,115200")


@pytest.mark.parametrize("kind", ["pvh", "hvm", "pv"])
@pytest.mark.parametrize("disk", ["file", "lv"])
def test_xl_parses_every_domain_type(tmp_path, kind, disk):
    cfg = tmp_path / "xen.cfg"
    cfg.write_text(domain_cfg("vm", XenOptions(type=kind, disk=disk, memory_mib=1536, vcpus=3, bridge="br1"),
                              CMDLINE, "rootfs.img", 700))
    v = xl.parse(cfg, strings=("name", "type"), longs=("memory", "vcpus"), lists=("disk", "vif"))
    assert (v["name"], v["type"], v["memory"], v["vcpus"], v["vif"]) == ("vm", kind, 1536, 3, ["bridge=br1"])
    target = "backendtype=phy, target=/dev/vg0/vm" if disk == "lv" else "target=/var/lib/xen/images/vm.img"
    assert v["disk"] == [f"format=raw, vdev=xvda, access=rw, {target}"]       # an LV: the phy backend
    text = cfg.read_text()
    if kind == "pvh":
        p = xl.parse(cfg, strings=("kernel", "ramdisk", "cmdline"))
        assert p["kernel"] == "/var/lib/xen/boot/vm/vmlinuz" and p["ramdisk"] == "/var/lib/xen/boot/vm/initrd.img"
        # the image's arguments, Xen's console last (the kernel's /dev/console), ttyS0 kept
        assert p["cmdline"] == "root=UUID=0b2d ro console=ttyS0,115200 console=hvc0"
    elif kind == "pv":
        assert xl.parse(cfg, strings=("kernel",))["kernel"] == "/usr/lib/grub-xen/grub-x86_64-xen.bin"
    else:
        assert 'boot = "c"' in text and "kernel" not in text
    if disk == "lv":
        assert "lvcreate -L 700M -n vm vg0" in text and "dd if=rootfs.img of=/dev/vg0/vm" in text


def test_xl_refuses_what_xl_would(tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text('name = "x"\nvif = [ "bridge=xenbr0"\n')
    with pytest.raises(BuildError, match=r"bad.cfg:2: config parsing error"):
        xl.parse(bad, strings=("name",))
    bad.write_text('name = "x"\ndisk = [ "format=raw, vdev=xvda, nonsense=1, target=/x" ]\n')
    with pytest.raises(BuildError, match="unknown parameter"):
        xl.parse(bad, strings=("name",), lists=("disk",))
    bad.write_text('name = "x"\n')
    with pytest.raises(BuildError, match="xl finds no memory"):
        xl.parse(bad, strings=("name",), longs=("memory",))


def test_xen_output_takes_its_disk_from_the_context(paths, tmp_path):
    write(paths.recipes, "vm", "extends: minimal\noutputs: {xen: {type: hvm, mac: '00:16:3e:00:00:01'}}\n")
    plan = plan_of("vm", paths)
    raw = tmp_path / "any-name.raw"
    raw.write_bytes(b"\0" * (3 << 20))
    runner = RecordingRunner()
    inputs = {"disk": [Artifact("disk", str(raw), raw.stat().st_size, "x")], "rootfs": [], "kernel": []}
    arts = REGISTRY["xen"].make(ctx_for(plan, "xen", tmp_path, runner, inputs=inputs))
    assert runner.calls == [] and [a.path for a in arts] == ["xen.cfg"] and arts[0].format == "xl-hvm"
    text = (tmp_path / "out/xen.cfg").read_text()
    assert "Copy any-name.raw to /var/lib/xen/images/vm.img" in text
    assert 'vif = [ "mac=00:16:3e:00:00:01, bridge=xenbr0" ]' in text


def fake_vmdk(argv):
    """A stream-optimized VMDK's start: the header, then the descriptor with qemu's random CID."""
    import struct
    descriptor = b"# Disk DescriptorFile\nversion=1\nCID=5eed1e55\nparentCID=ffffffff\n"
    header = b"KDMV" + struct.pack("<IIQQQQ", 3, 0, 2048, 128, 1, 20)
    Path(argv[-1]).write_bytes((header.ljust(512, b"\1") + descriptor).ljust(5000, b"\0"))


def build_ova(paths, tmp_path, text="extends: minimal\noutputs: {ova: {memory_mib: 3072, vcpus: 4}}\n"):
    write(paths.recipes, "vm", text)
    plan = plan_of("vm", paths)
    raw = tmp_path / "disk-any.raw"
    raw.write_bytes(b"\0" * (5 << 20))
    runner = RecordingRunner(effects={"qemu-img convert": fake_vmdk})
    inputs = {"disk": [Artifact("disk", str(raw), raw.stat().st_size, "x")]}
    arts = REGISTRY["ova"].make(ctx_for(plan, "ova", tmp_path, runner, inputs=inputs))
    return plan, runner, arts, tmp_path / "out/vm.ova"


def members(ova: Path) -> dict[str, bytes]:
    with tarfile.open(ova) as tar:
        assert tar.format == tarfile.USTAR_FORMAT or all(m.name.isascii() for m in tar)
        return {m.name: tar.extractfile(m).read() for m in tar}


def check_ovf_rules(root: ET.Element) -> None:
    """What OVF 1.0 (DSP0243/DSP8023) asks of an envelope, as far as our documents go."""
    assert root.tag == f"{{{NS['ovf']}}}Envelope" and root.get(f"{{{NS['ovf']}}}version") == "1.0"
    hw = root.find("ovf:VirtualSystem/ovf:VirtualHardwareSection", NS)
    assert hw.find("ovf:System/vssd:VirtualSystemType", NS).text == "virtualbox-2.2"
    ids = []
    for item in hw.findall("ovf:Item", NS):
        names = [child.tag.split("}")[1] for child in item]
        assert names == sorted(names), names          # RASD's elements in the schema's (alphabetical) order
        assert {"ElementName", "InstanceID", "ResourceType"} <= set(names)
        ids.append(item.find("rasd:InstanceID", NS).text)
    assert len(ids) == len(set(ids))
    for item in hw.findall("ovf:Item", NS):            # a disk's parent is a controller of this section
        parent = item.find("rasd:Parent", NS)
        if parent is not None:
            assert parent.text in ids
    disks = {d.get(f"{{{NS['ovf']}}}diskId") for d in root.findall("ovf:DiskSection/ovf:Disk", NS)}
    for res in hw.findall("ovf:Item/rasd:HostResource", NS):
        assert res.text.removeprefix("/disk/") in disks
    networks = {n.get(f"{{{NS['ovf']}}}name") for n in root.findall("ovf:NetworkSection/ovf:Network", NS)}
    assert {c.text for c in hw.findall("ovf:Item/rasd:Connection", NS)} <= networks


def test_ova_envelope_manifest_and_order(paths, tmp_path):
    plan, runner, arts, ova = build_ova(paths, tmp_path)
    (argv,) = runner.calls
    assert argv[:6] == ("qemu-img", "convert", "-f", "raw", "-O", "vmdk") and "subformat=streamOptimized" in argv
    assert argv[-2].endswith("disk-any.raw")           # the disk from the context, not a file name
    files = members(ova)
    assert list(files) == ["vm.ovf", "vm.mf", "vm-disk1.vmdk"]      # envelope first, manifest second
    for line in files["vm.mf"].decode().splitlines():
        name, digest = line.removeprefix("SHA1(").split(")= ")
        assert hashlib.sha1(files[name]).hexdigest() == digest
    root = ET.fromstring(files["vm.ovf"])
    check_ovf_rules(root)
    ref = root.find("ovf:References/ovf:File", NS)
    assert ref.get(f"{{{NS['ovf']}}}href") == "vm-disk1.vmdk"
    assert int(ref.get(f"{{{NS['ovf']}}}size")) == len(files["vm-disk1.vmdk"])
    disk = root.find("ovf:DiskSection/ovf:Disk", NS)
    assert disk.get(f"{{{NS['ovf']}}}capacity") == str(5 << 20) and disk.get(f"{{{NS['ovf']}}}format") == VMDK_STREAM
    assert root.find(".//vbox:Machine", NS) is None     # no Machine section to disagree with the disks
    hw = root.find(".//ovf:VirtualHardwareSection", NS)
    quantity = {i.find("rasd:ResourceType", NS).text: i.find("rasd:VirtualQuantity", NS) for i in hw.findall("ovf:Item", NS)}
    assert quantity["3"].text == "4" and quantity["4"].text == "3072"
    assert root.find(".//ovf:OperatingSystemSection/vbox:OSType", NS).text == "Debian_64"
    assert arts[0].kind == "ova" and arts[0].virtual_size == 5 << 20


def test_ova_manifest_in_sha256_on_request_and_text_escaped(paths, tmp_path):
    text = "extends: minimal\ndescription: 'a <b> & c'\noutputs: {ova: {digest: sha256}}\n"
    _, _, _, ova = build_ova(paths, tmp_path, text)
    files = members(ova)
    assert files["vm.mf"].decode().startswith("SHA256(vm.ovf)= ")
    assert ET.fromstring(files["vm.ovf"]).find(".//ovf:Annotation", NS).text == "a <b> & c"


def test_netboot_ova_is_a_few_kb_with_no_disk_booting_from_the_network(paths, tmp_path):
    write(paths.recipes, "vm", "extends: minimal\noutputs: {netboot-ova: {}}\n")
    plan = plan_of("vm", paths)
    runner = RecordingRunner()
    REGISTRY["netboot-ova"].make(ctx_for(plan, "netboot-ova", tmp_path, runner))
    ova = tmp_path / "out/vm-netboot.ova"
    assert runner.calls == [] and ova.stat().st_size <= 16 << 10
    files = members(ova)
    assert list(files) == ["vm-netboot.ovf", "vm-netboot.mf"]
    root = ET.fromstring(files["vm-netboot.ovf"])
    check_ovf_rules(root)
    assert root.find("ovf:DiskSection", NS) is None and root.find("ovf:References/ovf:File", NS) is None
    order = root.findall(".//vbox:Machine/ovf:Hardware/ovf:Boot/ovf:Order", NS)
    assert order[0].get("device") == "Network" and {o.get("device") for o in order[1:]} == {"None"}
    assert root.find(".//rasd:Connection", NS).text == "Bridged"


def test_the_harness_reads_the_disk_through_the_envelope(paths, tmp_path):
    _, _, _, ova = build_ova(paths, tmp_path)
    got = ova_disk(ova, tmp_path)
    assert got.name == "vm-disk1.vmdk" and got.read_bytes().startswith(b"KDMV")
    evil = tmp_path / "evil.ova"
    ovf = members(ova)["vm.ovf"].replace(b'ovf:href="vm-disk1.vmdk"', b'ovf:href="../../etc/passwd"')
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("vm.ovf")
        info.size = len(ovf)
        tar.addfile(info, io.BytesIO(ovf))
    with pytest.raises(BuildError, match="not a member"):
        ova_disk(evil, tmp_path)


def build_iso(paths, tmp_path, text="extends: minimal\noutputs: {iso: {}}\n"):
    write(paths.recipes, "vm", text)
    plan = plan_of("vm", paths)
    src = tmp_path / "src"
    src.mkdir()
    files = {}
    for kind, name, size in (("kernel", "vmlinuz-x", 3000), ("initrd", "initrd-x", 5000),
                             ("squashfs", "any.squashfs", 70000)):
        f = src / name
        f.write_bytes(kind.encode() * (size // len(kind)))
        files[kind] = Artifact(kind, str(f), f.stat().st_size, "x")

    def writes(flag):
        return lambda argv: Path(argv[argv.index(flag) + 1]).write_bytes(b"EFI" * 1000)
    runner = RecordingRunner(effects={"grub-mkimage": writes("-o"),
                                      "mkfs.fat": lambda argv: Path(argv[-2]).write_bytes(b"\0" * (4 << 20))})
    inputs = {"kernel": [files["kernel"], files["initrd"]], "squashfs": [files["squashfs"]]}
    arts = REGISTRY["iso"].make(ctx_for(plan, "iso", tmp_path, runner, inputs=inputs))
    return plan, runner, arts, tmp_path / "out/vm.iso"


def read_iso(iso: Path, path: str) -> bytes:
    import pycdlib
    p = pycdlib.PyCdlib()
    p.open(str(iso))
    try:
        out = io.BytesIO()
        p.get_file_from_iso_fp(out, rr_path=path)
        return out.getvalue()
    finally:
        p.close()


def test_iso_command_sequence_and_layout(paths, tmp_path):
    import subprocess
    import pycdlib
    plan, runner, arts, iso = build_iso(paths, tmp_path)
    tools = [argv[0] for argv in runner.calls]
    assert tools == ["grub-mkimage", "mkfs.fat", "mmd", "mcopy"]
    mkimage = runner.calls[0]
    assert mkimage[mkimage.index("-O") + 1] == "x86_64-efi" and {"iso9660", "search_label"} <= set(mkimage)
    early = Path(mkimage[mkimage.index("-c") + 1]).read_text()
    assert "search --no-floppy --label --set=root VM" in early
    assert runner.calls[3][-1] == "::/EFI/BOOT/BOOTX64.EFI"
    # the files the ISO needs come from its inputs, whatever their names
    assert read_iso(iso, "/live/root.squashfs") == Path(tmp_path / "src/any.squashfs").read_bytes()
    assert read_iso(iso, "/live/vmlinuz").startswith(b"kernel")
    isolinux = read_iso(iso, "/isolinux/isolinux.cfg").decode()
    grub_cfg = read_iso(iso, "/boot/grub/grub.cfg").decode()
    for menu in (isolinux, grub_cfg):
        assert "boot=distonet-live distonet.live=VM distonet.union=tmpfs ro console=tty0 console=ttyS0,115200" in menu
        assert "root=UUID" not in menu and menu.count("distonet.toram") == 1
    assert "SERIAL 0 115200" in isolinux and "DEFAULT live" in isolinux
    (tmp_path / "g.cfg").write_text(grub_cfg)
    subprocess.run(["grub-script-check", str(tmp_path / "g.cfg")], check=True)
    assert subprocess.run(["blkid", "-o", "value", "-s", "LABEL", str(iso)], capture_output=True,
                          text=True).stdout.strip() == "VM"
    p = pycdlib.PyCdlib()
    p.open(str(iso))
    try:
        cat = p.eltorito_boot_catalog
        entries = [cat.initial_entry] + [e for s in cat.sections for e in s.section_entries]
        assert len(entries) == 2
        assert [s.platform_id for s in cat.sections] == [0xEF]            # the second entry: UEFI
        assert p.isohybrid_mbr is not None                                 # a stick boots it too
    finally:
        p.close()
    with open(iso, "rb") as fh:
        mbr = fh.read(512)
    assert mbr[510:] == b"\x55\xaa"
    assert arts[0].kind == "iso" and arts[0].path == "vm.iso"


def test_iso_label_option(paths, tmp_path):
    _, runner, _, iso = build_iso(paths, tmp_path, "extends: minimal\noutputs: {iso: {label: LAB_2026}}\n")
    assert "distonet.live=LAB_2026 " in read_iso(iso, "/isolinux/isolinux.cfg").decode()


def test_an_iso_recipe_gets_the_live_and_union_hooks(paths):
    from distonet.pipeline import initramfs_facts
    from distonet.recipe import load_recipe
    write(paths.recipes, "vm", "extends: minimal\noutputs: {iso: {}}\n")
    assert [s["name"] for s in initramfs_facts(load_recipe("vm", paths.search), paths)] == ["union", "live"]
    assert initramfs_facts(load_recipe("minimal", paths.search), paths) == []
