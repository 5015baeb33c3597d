"""Command sequences of every output, with the runner replaced (diskimage-builder's way): the
argv each tool gets, what reaches it from needed outputs, and that files appear whole."""

from pathlib import Path

import pytest

from distonet.outputs import REGISTRY
from distonet.outputs.base import OutputContext
from distonet.manifest import Artifact
from tests.helpers import plan_of, write
from tests.recording import RecordingRunner

SECTOR = 512


def fake_tree(root: Path) -> Path:
    (root / "boot").mkdir(parents=True)
    for v in ("6.1.0-9-amd64", "6.12.9-amd64"):
        (root / "boot" / f"vmlinuz-{v}").write_bytes(b"K" * 1000)
        (root / "boot" / f"initrd.img-{v}").write_bytes(b"I" * 2000)
    (root / "boot" / "vmlinuz-7.0-noinitrd").write_bytes(b"K")
    (root / "etc").mkdir()
    (root / "etc" / "os-release").write_text("ID=debian\n")
    return root


def writes_last_arg(size: int):
    def effect(argv):
        Path(argv[-1] if not argv[-1].endswith("k") else argv[-2]).write_bytes(b"\0" * size)
    return effect


def writes_after(flag: str, size: int):
    def effect(argv):
        Path(argv[argv.index(flag) + 1]).write_bytes(b"\0" * size)
    return effect


def ctx_for(plan, name, tmp_path, runner, inputs=None, tree=None) -> OutputContext:
    step = plan.output(name)
    out = tmp_path / "out"
    work = tmp_path / "work"
    out.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    cls = REGISTRY[name]
    return OutputContext(options=step.options, reads={r: getattr(plan.recipe, r) for r in cls.reads},
                         build=plan.build, inputs=inputs or {}, out=out, work=work, tree=tree,
                         ledger=None, runner=runner)


def test_every_output_declares_what_it_needs():
    for name, cls in REGISTRY.items():
        assert cls.files(cls.Options()), name
        assert set(cls.needs) <= set(REGISTRY), name
        assert all(isinstance(t, str) for t in cls.tools)
    assert REGISTRY["qcow2"].needs_tree is False and REGISTRY["rootfs"].needs_tree is True


def test_rootfs_runs_mkfs_from_the_tree_with_the_plan_uuid(paths, tmp_path):
    plan = plan_of("minimal", paths)
    tree = fake_tree(tmp_path / "tree")
    runner = RecordingRunner(effects={"eatmydata mkfs.ext4": lambda argv: Path(argv[-2]).write_bytes(b"E" * 4096)})
    arts = REGISTRY["rootfs"].make(ctx_for(plan, "rootfs", tmp_path, runner, tree=tree))
    (argv,) = runner.calls
    assert argv[:4] == ("eatmydata", "mkfs.ext4", "-q", "-F")  # no fsync: the page cache has it and ("-U", plan.root_uuid) == argv[argv.index("-U"):argv.index("-U") + 2]
    assert argv[argv.index("-d") + 1] == str(tree)
    size_k = int(argv[-1].rstrip("k"))
    assert (size_k * 1024) % (4 << 20) == 0  # whole 4 MiB extents
    assert [a.path for a in arts] == ["rootfs.img"] and arts[0].format == "ext4"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["rootfs.img"]  # no temporary left


def test_rootfs_retries_larger_only_when_out_of_room(paths, tmp_path):
    from distonet.errors import CommandError
    plan = plan_of("minimal", paths)
    tree = fake_tree(tmp_path / "tree")
    with pytest.raises(CommandError):
        REGISTRY["rootfs"].make(ctx_for(plan, "rootfs", tmp_path, RecordingRunner(fail="eatmydata mkfs.ext4"), tree=tree))
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-written


def test_kernel_takes_the_newest_kernel_with_an_initrd(paths, tmp_path):
    plan = plan_of("minimal", paths)
    tree = fake_tree(tmp_path / "tree")
    arts = REGISTRY["kernel"].make(ctx_for(plan, "kernel", tmp_path, RecordingRunner(), tree=tree))
    assert [(a.kind, a.path, a.version) for a in arts] == [("kernel", "vmlinuz", "6.12.9-amd64"),
                                                          ("initrd", "initrd.img", "6.12.9-amd64")]


def test_disk_command_sequence_takes_rootfs_from_its_input(paths, tmp_path):
    plan = plan_of("minimal", paths)
    tree = fake_tree(tmp_path / "tree")
    rootfs = tmp_path / "elsewhere" / "some-rootfs.img"  # any path: never a literal file name
    rootfs.parent.mkdir()
    rootfs.write_bytes(b"R" * (8 << 20))
    runner = RecordingRunner(effects={"mkfs.fat": lambda argv: Path(argv[-2]).write_bytes(b"\0" * 1024),
                                      "grub-mkimage": writes_after("-o", 40 * SECTOR)})
    inputs = {"rootfs": [Artifact("rootfs", str(rootfs), rootfs.stat().st_size, "x")]}
    arts = REGISTRY["disk"].make(ctx_for(plan, "disk", tmp_path, runner, inputs=inputs, tree=tree))
    tools = [c[0] for c in runner.calls]
    assert tools == ["sfdisk", "mkfs.fat", "mmd", "mcopy", "grub-mkimage", "mcopy", "grub-mkimage"]
    assert runner.inputs[0].startswith("label: gpt")
    disk = (tmp_path / "out" / "disk.raw").read_bytes()
    at = disk.find(b"R" * 4096)
    assert at > 0 and at % (1 << 20) == 0 and disk[at:at + (8 << 20)] == rootfs.read_bytes()   # the root, whole
    cfg = [c for c in runner.calls if c[0] == "mcopy" and c[-1] == "::/boot/grub/grub.cfg"][0][3]
    text = (tmp_path / "work" / "grub.cfg").read_text() if (tmp_path / "work" / "grub.cfg").exists() else ""
    assert cfg.endswith("grub.cfg") and "vmlinuz-6.12.9-amd64" in text
    assert " ".join(plan.build.cmdline) in text
    assert arts[0].path == "disk.raw" and (tmp_path / "out" / "disk.raw").stat().st_size > 8 << 20
    from distonet import grub
    boot_img = (grub.GRUB_LIB / "i386-pc" / "boot.img").read_bytes()
    with open(tmp_path / "out" / "disk.raw", "rb") as fh:
        assert fh.read(grub.KERNEL_SECTOR) == boot_img[:grub.KERNEL_SECTOR]  # BIOS code in place


def test_uefi_only_disk_has_no_bios_loader(paths, tmp_path):
    write(paths.recipes, "u", "extends: minimal\nreplace: [boot.firmware]\nboot: {firmware: [uefi]}\n")
    plan = plan_of("u", paths)
    rootfs = tmp_path / "r.img"
    rootfs.write_bytes(b"R" * (1 << 20))
    runner = RecordingRunner(effects={"mkfs.fat": lambda argv: Path(argv[-2]).write_bytes(b"\0" * 1024),
                                      "grub-mkimage": writes_after("-o", 40 * SECTOR)})
    REGISTRY["disk"].make(ctx_for(plan, "disk", tmp_path, runner, tree=fake_tree(tmp_path / "t"),
                                  inputs={"rootfs": [Artifact("rootfs", str(rootfs), 1 << 20, "x")]}))
    assert [c[2] for c in runner.calls if c[0] == "grub-mkimage"] == ["x86_64-efi"]


def test_qcow2_converts_the_disk_it_is_given(paths, tmp_path):
    write(paths.recipes, "c", "extends: minimal\noutputs: {qcow2: {compress: true}}\n")
    plan = plan_of("c", paths)
    raw = tmp_path / "d.raw"
    raw.write_bytes(b"\0" * 4096)
    runner = RecordingRunner(effects={"qemu-img": writes_last_arg(100)})
    arts = REGISTRY["qcow2"].make(ctx_for(plan, "qcow2", tmp_path, runner,
                                          inputs={"disk": [Artifact("disk", str(raw), 4096, "x")]}))
    (argv,) = runner.calls
    assert argv[:2] == ("qemu-img", "convert") and "-c" in argv and argv[-2] == str(raw)
    assert arts[0].format == "qcow2" and arts[0].virtual_size == 4096


def test_libvirt_domain_validates_against_libvirts_schema(paths, tmp_path):
    from distonet.host.run import run
    write(paths.recipes, "vm", "extends: minimal\ndescription: \"a lab VM <with> 'quotes' & more\"\n"
                              "outputs: {libvirt: {memory_mib: 4096, vcpus: 4}}\n")
    plan = plan_of("vm", paths)
    arts = REGISTRY["libvirt"].make(ctx_for(plan, "libvirt", tmp_path, run))  # the real virt-xml-validate
    xml = (tmp_path / "out/libvirt.xml").read_text()
    assert [a.kind for a in arts] == ["libvirt"]
    assert "<os firmware='efi'>" in xml and "<memory unit='MiB'>4096</memory>" in xml
    assert "<source file='/var/lib/libvirt/images/vm.qcow2'/>" in xml and "<target dev='vda' bus='virtio'/>" in xml
    assert "&lt;with&gt; &#39;quotes&#39; &amp; more" in xml  # escaped, not a broken document
    write(paths.recipes, "vm2", "extends: minimal\noutputs: {libvirt: {firmware: bios, bridge: br0}}\n")
    REGISTRY["libvirt"].make(ctx_for(plan_of("vm2", paths), "libvirt", tmp_path, run))
    xml = (tmp_path / "out/libvirt.xml").read_text()
    assert "firmware='efi'" not in xml and "<source bridge='br0'/>" in xml


def test_libvirt_refuses_a_document_the_schema_rejects(paths, tmp_path, monkeypatch):
    from distonet.errors import BuildError
    from distonet.host.run import run
    import distonet.outputs.libvirt as lv
    monkeypatch.setattr(lv, "domain_xml", lambda *a: "<domain type='kvm'><nonsense/></domain>")
    write(paths.recipes, "vm", "extends: minimal\noutputs: {libvirt: {}}\n")
    with pytest.raises(BuildError, match="does not pass libvirt's schema"):
        REGISTRY["libvirt"].make(ctx_for(plan_of("vm", paths), "libvirt", tmp_path, run))
    assert not (tmp_path / "out/libvirt.xml").exists()  # nothing half-made appears


def test_squashfs_is_made_by_mksquashfs_and_read_back_by_unsquashfs(paths, tmp_path):
    import os
    import subprocess
    from distonet.host.run import run
    tree = fake_tree(tmp_path / "tree")
    (tree / "etc/secret").write_text("s")
    os.chmod(tree / "etc/secret", 0o600)
    (tree / "etc/link").symlink_to("os-release")
    write(paths.recipes, "sq", "extends: minimal\noutputs: {squashfs: {level: 3}}\n")
    plan = plan_of("sq", paths)
    arts = REGISTRY["squashfs"].make(ctx_for(plan, "squashfs", tmp_path, run, tree=tree))  # the real mksquashfs
    assert [(a.kind, a.path, a.format) for a in arts] == [("squashfs", "root.squashfs", "squashfs+zstd")]
    image = tmp_path / "out/root.squashfs"
    listing = subprocess.run(["unsquashfs", "-lln", str(image)], capture_output=True, text=True, check=True).stdout
    assert any(l.startswith("-rw------- ") and l.endswith("/etc/secret") for l in listing.splitlines())
    assert any(l.startswith("lrwxrwxrwx") and l.endswith("/etc/link -> os-release") for l in listing.splitlines())
    info = subprocess.run(["unsquashfs", "-s", str(image)], capture_output=True, text=True, check=True).stdout
    assert "Compression zstd" in info and "Block size 1048576" in info
