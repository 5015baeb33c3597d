"""The site side of diskless nodes: the inventory and its errors, per-host boot entries, CHAP
credentials and their cpio, the tgt target, the iSCSI output, per-node layers, and the boot
harness's TFTP tree. Real tools where they are cheap (cpio, grub-script-check, mkfs.ext4)."""

import stat
import subprocess
from pathlib import Path

import pytest

from distonet import chap, clones, netboot
from distonet.enums import Chap
from distonet.errors import BuildError, RecipeError
from distonet.host.run import run
from distonet.manifest import Artifact
from distonet.outputs import REGISTRY
from distonet.pipeline import netboot_facts
from distonet.recipe import load_recipe
from tests.helpers import plan_of, write
from tests.recording import RecordingRunner
from tests.unit.test_netboot_outputs import pxe_inputs
from tests.unit.test_outputs import ctx_for

NODE = ("extends: minimal\nsite: lab\nkernel: {initramfs: [initramfs-tools, open-iscsi]}\n"
        "netboot: {modes: [nfs, nfs-persistent, iscsi, iscsi-persistent], "
        "iscsi: {iqn: iqn.2030-01.org.example, chap: mutual}}\n"
        "replace: [outputs]\noutputs: {kernel: {}, iscsi: {}, pxe: {}, config: {clients: [10.1.0.0/16]}}\n")
HOSTS = """hosts:
  n11: {mac: "52:54:00:00:00:11", recipe: node, mode: iscsi, address: 10.1.0.11}
  n21: {mac: "52-54-00-00-00-21", recipe: node, mode: nfs-persistent, args: [quiet]}
  n31: {mac: "52:54:00:00:00:31", recipe: node, mode: iscsi-persistent}
  other: {mac: "52:54:00:00:00:99", recipe: workstation}
"""


def site(paths, hosts=HOSTS):
    d = paths.recipes.parent / "sites/lab"
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts.yaml").write_text(hosts)
    return d / "hosts.yaml"


def node_plan(paths, text=NODE, hosts=HOSTS):
    site(paths, hosts)
    write(paths.recipes, "node", text)
    r = load_recipe("node", paths.search)
    return plan_of("node", paths, netboot=netboot_facts(r, paths, "lab"))


def test_inventory_hosts_of_the_recipe(paths):
    plan = node_plan(paths)
    hosts = plan.facts.netboot["hosts"]
    assert [h["hostname"] for h in hosts] == ["n11", "n21", "n31"]   # other recipes' hosts left out
    assert hosts[1]["mac"] == "52:54:00:00:00:21"                     # dashes accepted, one form kept


@pytest.mark.parametrize("hosts, message", [
    ('hosts:\n  n1: {mac: "52:54:00:00:00:1", recipe: node}\n', "hosts.n1.mac: a MAC address"),
    ('hosts:\n  n1: {mac: "52:54:00:00:00:01", recipe: node, mood: nfs}\n', "hosts.n1.mood: unknown key; did you mean 'mode'?"),
    ('hosts:\n  n1: {mac: "52:54:00:00:00:01", recipe: node}\n  n2: {mac: "52:54:00:00:00:01", recipe: node}\n',
     "hosts.n2.mac: 52:54:00:00:00:01 is already n1's"),
    ('hosts:\n  n1: {mac: "52:54:00:00:00:01", recipe: node, mode: iscsi}\n', "hosts.n1.mode: node offers no 'iscsi' boot"),
    ('hosts: [n1]\n', "hosts: "),
])
def test_inventory_errors_name_the_file_and_key(paths, hosts, message):
    text = "extends: minimal\nsite: lab\nnetboot: {modes: [nfs, nfs-persistent]}\n"
    with pytest.raises(RecipeError) as exc:
        node_plan(paths, text, hosts)
    assert f"sites/lab/hosts.yaml: {message}" in str(exc.value)


def test_iscsi_needs_open_iscsi_in_the_image(paths):
    write(paths.recipes, "bad", "extends: minimal\nnetboot: {modes: [iscsi]}\n")
    with pytest.raises(RecipeError, match="netboot.modes: iscsi needs open-iscsi"):
        load_recipe("bad", paths.search)


def test_credentials_are_made_once_private_and_checked(paths):
    plan = node_plan(paths)
    fact = plan.facts.netboot["chap"]
    f = Path(fact["file"])
    assert f == paths.recipes.parent / "secrets/iscsi/node.yaml"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600 and stat.S_IMODE(f.parent.stat().st_mode) == 0o700
    creds = chap.read(fact)
    assert creds["user"] == "node" and len(creds["secret"]) == 16 and creds["secret"] != creds["target_secret"]
    assert node_plan(paths).facts.netboot["chap"] == fact                # made once, then kept
    assert not any(creds["secret"] in repr(v) for v in (plan.facts.netboot, [o.key for o in plan.outputs]))
    f.chmod(0o644)
    with pytest.raises(RecipeError, match="readable by others"):
        chap.read(fact)
    f.chmod(0o600)
    f.write_text(f.read_text() + "# edited\n")
    with pytest.raises(BuildError, match="changed since the build was planned"):
        chap.read(fact)


def test_credentials_change_the_netboot_outputs_only(paths):
    before = {o.name: o.key for o in node_plan(paths).outputs}
    f = paths.recipes.parent / "secrets/iscsi/node.yaml"
    f.write_text(f.read_text().replace("user: node", "user: node2"))
    after = {o.name: o.key for o in node_plan(paths).outputs}
    assert sorted(n for n in before if before[n] != after[n]) == ["config", "iscsi", "pxe"]


def test_menus_per_mode_and_per_host(paths):
    plan = node_plan(paths)
    files = netboot.menus("node", plan.recipe.boot, plan.recipe.netboot, plan.root_uuid, plan.facts.netboot["hosts"])
    default = files["pxe/pxelinux.cfg/default"]
    assert [l.split()[1] for l in default.splitlines() if l.startswith("LABEL")] == \
        ["nfs", "nfs-persistent", "iscsi", "iscsi-persistent"]
    own = default.split("LABEL iscsi-persistent")[1]
    assert "distonet.iscsi_target=iqn.2030-01.org.example:node-@HOSTNAME@" in own and "iscsi_target_name" not in own
    assert "distonet.union=dev:/dev/disk/by-label/distonet-layer" in own and "iscsi/node.cpio" in own
    assert "distonet.iscsi_target=iqn.2030-01.org.example:node-n31 " in files["pxe/pxelinux.cfg/01-52-54-00-00-00-31"]
    assert "distonet.union=nfs:/srv/distonet/layers/node/@HOSTNAME@" in default
    iscsi = default.split("LABEL iscsi\n")[1].split("\nLABEL")[0]
    assert "INITRD initrd.img,iscsi/node.cpio" in iscsi
    assert f"root=UUID={plan.root_uuid} iscsi_target_name=iqn.2030-01.org.example:node ip=dhcp ro" in iscsi
    creds = chap.read(plan.facts.netboot["chap"])
    assert not any(creds["secret"] in text or creds["target_secret"] in text for text in files.values())
    # each inventory host: its own entry in each loader's place for it
    n11 = files["pxe/pxelinux.cfg/01-52-54-00-00-00-11"]
    assert "DEFAULT n11" in n11 and "iscsi_initiator=iqn.2030-01.org.example:n11" in n11
    n21 = files["pxe/grub/hosts/52:54:00:00:00:21.cfg"]
    assert "distonet.union=nfs:/srv/distonet/layers/node/n21 " in n21 and n21.rstrip().endswith("}")
    assert " quiet" in n21.split("linux /vmlinuz")[1].splitlines()[0]
    assert "initrd tftp://${next-server}/iscsi/node.cpio" in files["pxe/hosts/52-54-00-00-00-11.ipxe"]
    assert "chain --autofree tftp://${next-server}/hosts/${mac:hexhyp}.ipxe" in files["pxe/boot.ipxe"]
    for rel, text in files.items():
        if "/grub/" in rel:   # GRUB's own parser accepts every menu
            (paths.cache / "g.cfg").parent.mkdir(parents=True, exist_ok=True)
            (paths.cache / "g.cfg").write_text(text)
            subprocess.run(["grub-script-check", str(paths.cache / "g.cfg")], check=True)


def test_pxe_writes_the_host_files_and_a_private_credentials_cpio(paths, tmp_path, monkeypatch):
    plan = node_plan(paths)
    inputs = pxe_inputs(tmp_path, monkeypatch)
    runner = RecordingRunner(effects={"grub-mkimage": lambda argv: Path(argv[argv.index("-o") + 1]).write_bytes(b"E"),
                                      "cpio": lambda argv: run(argv, input="etc\netc/iscsi.initramfs\n")})
    arts = REGISTRY["pxe"].make(ctx_for(plan, "pxe", tmp_path, runner, inputs=inputs))
    paths_made = {a.path for a in arts}
    assert {"pxe/pxelinux.cfg/01-52-54-00-00-00-11", "pxe/grub/hosts/52:54:00:00:00:21.cfg",
            "pxe/hosts/52-54-00-00-00-11.ipxe", "pxe/iscsi/node.cpio"} <= paths_made
    cpio = tmp_path / "out/pxe/iscsi/node.cpio"
    assert stat.S_IMODE(cpio.stat().st_mode) == 0o600
    listing = subprocess.run(["cpio", "-itv", "--quiet"], stdin=open(cpio, "rb"), capture_output=True, text=True).stdout
    assert "etc/iscsi.initramfs" in listing and "root     root" in listing
    conf = subprocess.run(["cpio", "-i", "--to-stdout", "--quiet", "etc/iscsi.initramfs"], stdin=open(cpio, "rb"),
                          capture_output=True, text=True).stdout
    creds = chap.read(plan.facts.netboot["chap"])
    assert f"ISCSI_PASSWORD='{creds['secret']}'" in conf and f"ISCSI_IN_PASSWORD='{creds['target_secret']}'" in conf


def test_one_way_chap_sends_no_target_secret():
    creds = {"user": "u", "secret": "s" * 16, "target_user": "t", "target_secret": "x" * 16}
    assert "ISCSI_IN_" not in chap.initramfs_conf(creds, Chap.one_way)
    assert "ISCSI_IN_PASSWORD='xxxxxxxxxxxxxxxx'" in chap.initramfs_conf(creds, Chap.mutual)


def test_config_has_the_tgt_target_private_and_the_hosts(paths, tmp_path):
    plan = node_plan(paths)
    REGISTRY["config"].make(ctx_for(plan, "config", tmp_path, RecordingRunner()))
    out = tmp_path / "out/config"
    tgt = out / "tgt/node.conf"
    assert stat.S_IMODE(tgt.stat().st_mode) == 0o600
    creds = chap.read(plan.facts.netboot["chap"])
    text = tgt.read_text()
    assert "<target iqn.2030-01.org.example:node>" in text and "backing-store /srv/distonet/node.img" in text
    assert "readonly 1" in text and f"incominguser node {creds['secret']}" in text
    assert f"outgoinguser node-target {creds['target_secret']}" in text
    assert "initiator-name iqn.2030-01.org.example:n11" in text and "n21" not in text
    assert "initiator-address 10.1.0.0/16" in text
    own = text.split("<target iqn.2030-01.org.example:node-n31>")[1].split("</target>")[0]
    assert "<backing-store /srv/distonet/node.img>\n        lun 1\n        readonly 1\n        allow-in-use yes" in own
    assert "<backing-store /srv/distonet/layers/node/n31/layer.ext4>\n        lun 2\n" in own
    assert "initiator-name iqn.2030-01.org.example:n31" in own and f"incominguser node {creds['secret']}" in own
    dnsmasq = (out / "dnsmasq.conf").read_text()
    assert "dhcp-host=52:54:00:00:00:11,n11,10.1.0.11" in dnsmasq and "dhcp-host=52:54:00:00:00:21,n21\n" in dnsmasq
    ganesha = (out / "ganesha.conf").read_text()
    assert "Path = /srv/distonet/layers/node;" in ganesha and "Access_Type = RW; }" in ganesha
    assert "Only_Numeric_Owners = true;" in ganesha      # NFSv4 nodes have no idmapper in their initrd
    assert "/srv/distonet/layers/node 10.1.0.0/16(rw," in (out / "exports").read_text()


def test_iscsi_output_names_the_lun_and_initiators(paths, tmp_path):
    plan = node_plan(paths)
    (tmp_path / "rootfs.img").write_bytes(b"\0" * 4096)
    arts = REGISTRY["iscsi"].make(ctx_for(plan, "iscsi", tmp_path, RecordingRunner(),
                                          inputs={"rootfs": [Artifact("rootfs", str(tmp_path / "rootfs.img"), 4096, "z")]}))
    assert [a.path for a in arts] == ["iscsi/initiators"]
    text = (tmp_path / "out/iscsi/initiators").read_text()
    assert "target iqn.2030-01.org.example:node, CHAP mutual" in text and f"UUID {plan.root_uuid}" in text
    assert [l.split()[0] for l in text.splitlines() if not l.startswith("#")] == \
        ["iqn.2030-01.org.example:n11", "iqn.2030-01.org.example:n31"]
    assert "own target iqn.2030-01.org.example:node-n31" in text


def test_clones_make_sparse_layers_once(tmp_path):
    hosts = [{"hostname": "n21", "mode": "nfs-persistent"}, {"hostname": "n11", "mode": "iscsi"},
             {"hostname": "n31", "mode": "iscsi-persistent"}]
    made = clones.make_clones(hosts, tmp_path, size_mib=256)
    assert [(m.host, m.made) for m in made] == [("n21", True), ("n31", True)]
    layer = tmp_path / "n21/layer.ext4"
    assert layer.stat().st_size == 256 << 20 and layer.stat().st_blocks * 512 < 32 << 20   # sparse
    label = subprocess.run(["e2label", str(layer)], capture_output=True, text=True).stdout.strip()
    assert label == clones.LABEL
    inode = layer.stat().st_ino
    assert not clones.make_clones(hosts, tmp_path, size_mib=256)[0].made and layer.stat().st_ino == inode
    assert clones.make_clones(hosts, tmp_path, size_mib=256, reset=("n21",))[0].made
    assert not list(tmp_path.rglob(".*.tmp"))


def test_the_harness_serves_the_tree_with_a_node_s_choice(paths, tmp_path):
    from distonet.boot.netboot import Lab, holder_script
    out = tmp_path / "o"
    (out / "pxe/pxelinux.cfg").mkdir(parents=True)
    (out / "pxe/grub").mkdir()
    (out / "pxe/pxelinux.cfg/default").write_text("DEFAULT nfs\nLABEL nfs\nLABEL iscsi\n")
    (out / "pxe/grub/grub.cfg").write_text("# head\nif [ -s x ]; then\n configfile x\nfi\nset timeout=3\nmenuentry 'a' --id nfs {\n}\n")
    lab = Lab(out, paths=paths)
    lab.work = tmp_path / "w"
    tree = lab.tftp_tree("iscsi", "52:54:00:AA:00:01")
    assert (tree / "pxelinux.cfg/default").is_symlink()
    assert "DEFAULT iscsi" in (tree / "pxelinux.cfg/01-52-54-00-aa-00-01").read_text()
    grub = (tree / "grub/hosts/52:54:00:aa:00:01.cfg").read_text()
    assert grub.startswith("set default=iscsi\nset timeout=3") and "configfile" not in grub
    (tmp_path / "root").mkdir()
    script = holder_script([(tmp_path / "root", "/srv/x/root"), (tmp_path / "lun.img", "/srv/x/lun.img")], tmp_path / "r")
    assert "mount --bind" in script and f"ln -s {tmp_path / 'lun.img'} /srv/x/lun.img" in script
    with pytest.raises(BuildError, match="its top folder /tmp is needed"):
        holder_script([(tmp_path, "/tmp/export")], tmp_path / "r")


def test_nfs_version_from_the_recipe_or_the_host(paths):
    hosts = HOSTS + '  n41: {mac: "52:54:00:00:00:41", recipe: node, mode: nfs-persistent, nfs_version: 4}\n'
    plan = node_plan(paths, hosts=hosts)
    files = netboot.menus("node", plan.recipe.boot, plan.recipe.netboot, plan.root_uuid, plan.facts.netboot["hosts"])
    assert "nfsroot=/srv/distonet/node,vers=3,tcp" in files["pxe/pxelinux.cfg/default"]
    assert "nfsroot=/srv/distonet/node,vers=3,tcp" in files["pxe/pxelinux.cfg/01-52-54-00-00-00-21"]
    for rel in ("pxe/pxelinux.cfg/01-52-54-00-00-00-41", "pxe/grub/hosts/52:54:00:00:00:41.cfg",
                "pxe/hosts/52-54-00-00-00-41.ipxe"):
        assert "nfsroot=/srv/distonet/node,vers=4,tcp" in files[rel] and "vers=3" not in files[rel]
    v4 = node_plan(paths, NODE.replace("netboot: {", "netboot: {nfs_version: 4, "))
    files = netboot.menus("node", v4.recipe.boot, v4.recipe.netboot, v4.root_uuid, v4.facts.netboot["hosts"])
    assert "vers=3" not in files["pxe/pxelinux.cfg/default"] and "vers=4,tcp" in files["pxe/boot.ipxe"]


@pytest.mark.parametrize("hosts, message", [
    ('  n9: {mac: "52:54:00:00:00:09", recipe: node, nfs_version: 5}\n', "hosts.n9.nfs_version"),
])
def test_a_bad_nfs_version_names_the_host(paths, hosts, message):
    with pytest.raises(RecipeError, match=message):
        node_plan(paths, hosts=HOSTS + hosts)


def test_ibft_entries_log_in_from_ipxe_and_keep_the_target_off_the_command_line(paths, tmp_path, monkeypatch):
    hosts = HOSTS + '  n12: {mac: "52:54:00:00:00:12", recipe: node, mode: iscsi, ibft: true}\n'
    plan = node_plan(paths, hosts=hosts)
    files = netboot.menus("node", plan.recipe.boot, plan.recipe.netboot, plan.root_uuid, plan.facts.netboot["hosts"])
    n12 = files["pxe/hosts/52-54-00-00-00-12.ipxe"]
    assert "chain --autofree tftp://${next-server}/iscsi/node.ipxe\n" in n12
    assert "set initiator-iqn iqn.2030-01.org.example:n12\n" in n12
    assert "sanhook iscsi:${next-server}::3260:1:iqn.2030-01.org.example:node\n" in n12
    kernel = next(l for l in n12.splitlines() if l.startswith("kernel "))
    assert f"root=UUID={plan.root_uuid} iscsi_auto ip=dhcp ro" in kernel and "distonet.union=tmpfs" in kernel
    assert "iscsi_target" not in kernel and "iscsi_initiator" not in kernel and "node.cpio" not in n12
    # pxelinux and GRUB cannot write an iBFT: n12's entries there keep the command line
    assert "iscsi_target_name=" in files["pxe/pxelinux.cfg/01-52-54-00-00-00-12"]
    assert "sanhook" not in files["pxe/hosts/52-54-00-00-00-11.ipxe"] and "sanhook" not in files["pxe/boot.ipxe"]
    # the recipe may make it every iPXE entry's way: the node's name from DHCP, else its MAC address
    every = node_plan(paths, NODE.replace("chap: mutual", "chap: mutual, ibft: true"))
    files = netboot.menus("node", every.recipe.boot, every.recipe.netboot, every.root_uuid, every.facts.netboot["hosts"])
    persistent = files["pxe/boot.ipxe"].split(":iscsi-persistent\n")[1]
    assert "set node ${mac:hexhyp}\nisset ${hostname} && set node ${hostname} ||\n" in persistent
    assert "sanhook iscsi:${next-server}::3260:1:iqn.2030-01.org.example:node-${node}" in persistent
    assert "distonet.union=dev:/dev/disk/by-label/distonet-layer" in persistent
    assert "sanhook iscsi:${next-server}::3260:1:iqn.2030-01.org.example:node-n31\n" in \
        files["pxe/hosts/52-54-00-00-00-31.ipxe"]
    # the credentials: a private iPXE script beside the cpio, only when an entry uses it
    inputs = pxe_inputs(tmp_path, monkeypatch)
    runner = RecordingRunner(effects={"grub-mkimage": lambda argv: Path(argv[argv.index("-o") + 1]).write_bytes(b"E"),
                                      "cpio": lambda argv: Path(argv[argv.index("--file") + 1]).write_bytes(b"C")})
    arts = REGISTRY["pxe"].make(ctx_for(plan, "pxe", tmp_path, runner, inputs=inputs))
    settings = tmp_path / "out/pxe/iscsi/node.ipxe"
    assert "pxe/iscsi/node.ipxe" in {a.path for a in arts} and stat.S_IMODE(settings.stat().st_mode) == 0o600
    creds = chap.read(plan.facts.netboot["chap"])
    assert settings.read_text().splitlines()[2:] == [
        f"set username {creds['user']}", f"set password {creds['secret']}",
        f"set reverse-username {creds['target_user']}", f"set reverse-password {creds['target_secret']}"]
    without = node_plan(paths)
    (tmp_path / "2").mkdir()
    arts = REGISTRY["pxe"].make(ctx_for(without, "pxe", tmp_path / "2", runner, inputs=inputs))
    assert not any(a.path.endswith(".ipxe") and "/iscsi/" in a.path for a in arts)


NFSMOUNT = Path(__file__).parents[2] / "hooks/initramfs/netroot/bin/distonet-nfsmount"


def test_the_initramfs_nfsmount_mounts_v4_with_the_kernel_client(tmp_path):
    """initramfs-tools calls `nfsmount -o nolock -o ro -o vers=4,tcp SERVER:/PATH /root`: the
    wrapper drops the v3-only options, asks for 4.1 and names the server's address."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("mount", "modprobe"):
        (bin_ / tool).write_text(f'#!/bin/sh\necho {tool} "$@" >> {tmp_path}/calls\n')
        (bin_ / tool).chmod(0o755)
    env = {"PATH": f"{bin_}:/usr/bin:/bin"}
    subprocess.run(["sh", str(NFSMOUNT), "-o", "nolock", "-o", "ro", "-o", "vers=4,tcp,retrans=3",
                    "10.0.2.2:/srv/distonet/node", "/root"], env=env, check=True)
    subprocess.run(["sh", str(NFSMOUNT), "-o", "nolock,rw,vers=4.2", "10.0.2.2:/srv/layers/n1", "/run/x"],
                   env=env, check=True)
    assert (tmp_path / "calls").read_text().splitlines() == [
        "modprobe nfsv4",
        "mount -t nfs4 -o ro,vers=4.1,tcp,addr=10.0.2.2 10.0.2.2:/srv/distonet/node /root",
        "modprobe nfsv4",
        "mount -t nfs4 -o rw,vers=4.2,addr=10.0.2.2 10.0.2.2:/srv/layers/n1 /run/x"]
