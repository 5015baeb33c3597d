"""Diskless outputs and stage: the menus and site files rendered from the templates, the command
sequences of nfsroot and pxe, the initramfs stage's key and commands, and what is refused."""

import contextlib
from pathlib import Path

import pytest

from distonet import netboot
from distonet.errors import RecipeError
from distonet.manifest import Artifact
from distonet.outputs import REGISTRY
from distonet.pipeline import initramfs_facts
from distonet.recipe import load_recipe
from distonet.stages import REGISTRY as STAGES
from distonet.stages.base import HostFacts, StageContext
from tests.helpers import keys, plan_of, write
from tests.recording import RecordingRunner
from tests.unit.test_outputs import ctx_for

NODE = ("extends: minimal\nnetboot: {modes: [nfs]}\nreplace: [outputs]\n"
        "outputs: {kernel: {}, nfsroot: {}, pxe: {}, config: {clients: [10.1.0.0/16], dhcp_range: '10.1.0.50,10.1.0.99,1h'}}\n")


def node_plan(paths, text=NODE):
    write(paths.recipes, "node", text)
    r = load_recipe("node", paths.search)
    return plan_of("node", paths, initramfs=tuple(initramfs_facts(r, paths)))


def test_netboot_recipes_get_the_initramfs_stage_before_seal(paths):
    plan = node_plan(paths)
    assert [s.name for s in plan.stages][-2:] == ["initramfs", "seal"]
    sets = plan.stage("initramfs").inputs["sets"]
    assert [s["name"] for s in sets] == ["netroot", "union"]
    union = {f["path"] for f in sets[1]["files"]}
    assert union == {"hooks/distonet-union", "scripts/nfs-bottom/distonet-union", "scripts/local-bottom/distonet-union"}
    assert keys(plan)["packages.ssh"] == keys(plan_of("minimal", paths))["packages.ssh"]
    assert "initramfs" not in keys(plan_of("minimal", paths))


def test_pxe_without_modes_is_refused(paths):
    write(paths.recipes, "bad", "extends: minimal\noutputs: {pxe: {}}\n")
    with pytest.raises(RecipeError, match="outputs.pxe/config: the recipe enables no netboot.modes"):
        load_recipe("bad", paths.search)


def test_initramfs_stage_installs_the_sets_and_rebuilds_the_initrd(paths, tmp_path, monkeypatch):
    plan = node_plan(paths)
    stage = plan.stage("initramfs")
    tree = tmp_path / "merged"
    (tree / "usr/sbin").mkdir(parents=True)
    (tree / "usr/sbin/update-initramfs").touch()
    monkeypatch.setattr(StageContext, "mount_for_writing", lambda self: tree)
    monkeypatch.setattr("distonet.stages.initramfs.chroot_session", lambda *a, **k: contextlib.nullcontext())
    runner = RecordingRunner()
    sources = {f"initramfs:{s['name']}": Path(s["dir"]) for s in plan.facts.initramfs}
    ctx = StageContext("initramfs", stage.key, stage.inputs, (), tmp_path / "p",
                       HostFacts(mirror="m", cache=tmp_path, work=tmp_path, sources=sources), None, None, runner)
    STAGES["initramfs"].make(ctx)
    (argv,) = runner.calls
    assert argv[argv.index("chroot") + 2:][-4:] == ("update-initramfs", "-u", "-k", "all")
    script = tree / "etc/initramfs-tools/scripts/local-bottom/distonet-union"
    assert script.is_file() and not script.is_symlink() and script.stat().st_mode & 0o111
    assert "distonet.union=" in script.read_text()


def test_menus_have_one_entry_per_mode_with_the_server_from_dhcp(paths):
    from distonet.netboot import menus
    plan = node_plan(paths)
    files = menus("node", plan.recipe.boot, plan.recipe.netboot, plan.root_uuid)
    args = "root=/dev/nfs nfsroot=/srv/distonet/node,vers=3,tcp ip=dhcp boot=nfs ro distonet.union=tmpfs"
    assert f"  APPEND {args} console=tty0 console=ttyS0,115200" in files["pxe/pxelinux.cfg/default"]
    assert "SERIAL 0 115200" in files["pxe/pxelinux.cfg/default"]
    assert f"    linux /vmlinuz {args}" in files["pxe/grub/grub.cfg"]
    assert "kernel tftp://${next-server}/vmlinuz initrd=initrd.img " + args in files["pxe/boot.ipxe"]
    plan = node_plan(paths, NODE.replace("modes: [nfs]", "modes: [nfs], server: 10.9.8.7, export: '/nfs/{recipe}'"))
    files = menus("node", plan.recipe.boot, plan.recipe.netboot, plan.root_uuid)
    assert "nfsroot=10.9.8.7:/nfs/node,vers=3,tcp" in files["pxe/pxelinux.cfg/default"]


def pxe_inputs(tmp_path, monkeypatch) -> dict:
    """Stand-ins for pxelinux's files and the kernel output's artifacts."""
    import distonet.outputs.pxe as pxe
    for name in ("pxelinux.0", "ldlinux.c32", "vmlinuz", "initrd.img"):
        (tmp_path / name).write_bytes(name.encode())
    monkeypatch.setattr(pxe, "PXELINUX", tmp_path / "pxelinux.0")
    monkeypatch.setattr(pxe, "LDLINUX", tmp_path / "ldlinux.c32")
    return {"kernel": [Artifact("kernel", str(tmp_path / "vmlinuz"), 7, "x"),
                       Artifact("initrd", str(tmp_path / "initrd.img"), 10, "y")]}


def test_pxe_command_sequence(paths, tmp_path, monkeypatch):
    plan = node_plan(paths)
    inputs = pxe_inputs(tmp_path, monkeypatch)
    runner = RecordingRunner(effects={"grub-mkimage": lambda argv: Path(argv[argv.index("-o") + 1]).write_bytes(b"EFI")})
    arts = REGISTRY["pxe"].make(ctx_for(plan, "pxe", tmp_path, runner, inputs=inputs))
    (argv,) = runner.calls
    assert argv[:3] == ("grub-mkimage", "-O", "x86_64-efi") and "efinet" in argv and "tftp" in argv
    assert argv[argv.index("-p") + 1] == "/grub"   # the TFTP server comes from the firmware's boot
    out = tmp_path / "out"
    assert sorted(a.path for a in arts) == sorted(REGISTRY["pxe"].files(None))
    assert (out / "pxe/vmlinuz").read_bytes() == b"vmlinuz" and (out / "pxe/grubnetx64.efi").read_bytes() == b"EFI"


def test_nfsroot_tars_the_tree_with_numeric_owners(paths, tmp_path):
    plan = node_plan(paths)
    runner = RecordingRunner(effects={"tar": lambda argv: Path(argv[argv.index("--file") + 1]).write_bytes(b"T")})
    (tmp_path / "tree").mkdir()
    arts = REGISTRY["nfsroot"].make(ctx_for(plan, "nfsroot", tmp_path, runner, tree=tmp_path / "tree"))
    (argv,) = runner.calls
    assert "--numeric-owner" in argv and "--xattrs" in argv and argv[-1] == "."
    assert argv[argv.index("--directory") + 1] == str(tmp_path / "tree")
    assert [(a.kind, a.path) for a in arts] == [("nfsroot", "nfsroot.tar.zst")]


def test_config_renders_the_site_side(paths, tmp_path):
    plan = node_plan(paths)
    REGISTRY["config"].make(ctx_for(plan, "config", tmp_path, RecordingRunner()))
    out = tmp_path / "out/config"
    ganesha = (out / "ganesha.conf").read_text()
    assert "Path = /srv/distonet/node;" in ganesha and "Pseudo = /srv/distonet/node;" in ganesha
    assert "Access_Type = None;" in ganesha and "CLIENT { Clients = 10.1.0.0/16; Access_Type = RO; }" in ganesha
    assert (out / "exports").read_text().splitlines()[-1] == \
        "/srv/distonet/node 10.1.0.0/16(ro,no_root_squash,no_subtree_check,insecure)"
    dnsmasq = (out / "dnsmasq.conf").read_text()
    assert "dhcp-range=10.1.0.50,10.1.0.99,1h" in dnsmasq and "dhcp-boot=tag:efi-x86_64,grubnetx64.efi" in dnsmasq


def test_serial_settings_from_the_console():
    assert netboot.serial_of("ttyS1,9600") == {"port": 1, "speed": 9600}
    assert netboot.serial_of("tty0") is None and netboot.serial_of(None) is None


def test_a_template_change_remakes_pxe_and_config_only(paths, monkeypatch):
    before = {o.name: o.key for o in node_plan(paths).outputs}
    monkeypatch.setattr(netboot, "templates_digest", lambda: "changed")
    after = {o.name: o.key for o in node_plan(paths).outputs}
    assert sorted(n for n in before if before[n] != after[n]) == ["config", "pxe"]
