"""Diskless nodes, booted as on the site's network: PXE (pxelinux on BIOS, GRUB on UEFI) from the
generated pxe/ tree, the root read-only over NFS from nfs-ganesha or on an iSCSI LUN from tgtd
with CHAP, each server started from the generated config/ files, a union layer on top (tmpfs, or
the node's own on NFS). All of it in a network namespace with only loopback.

One site inventory (sites/lab/hosts.yaml) declares the machines: node11 boots iSCSI, node12 too
but through iPXE's own login and the iBFT, node21 and
node22 keep their changes in layers on NFS (node22 over NFSv4, the others' NFS roots are v3) and
node31 in a LUN of its own, which `distonet clones` makes."""

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.conftest import all_mount_points, distonet, leftovers, plan_for, wait_for

pytestmark = pytest.mark.integration

PASSWORD = "distonet-test"
HOSTS = """hosts:
  node11: {mac: "52:54:00:00:00:11", recipe: node, mode: iscsi}
  node12: {mac: "52:54:00:00:00:12", recipe: node, mode: iscsi, ibft: true}
  node21: {mac: "52:54:00:00:00:21", recipe: node, mode: nfs-persistent}
  node22: {mac: "52:54:00:00:00:22", recipe: node, mode: nfs-persistent, args: [distonet.test=22], nfs_version: 4}
  node31: {mac: "52:54:00:00:00:31", recipe: node, mode: iscsi-persistent}
"""


def layer_file(layer, path, tmp_path):
    """A file of a node's layer as the server sees it. The harness ends a node by killing QEMU, so
    what it wrote and synced may still sit in the ext4 journal: replay it, on a copy, as a mount would."""
    copy = tmp_path / f"{layer.parent.name}-replayed.ext4"
    subprocess.run(["cp", "--sparse=always", str(layer), str(copy)], check=True)
    fsck = subprocess.run(["e2fsck", "-y", "-E", "journal_only", str(copy)], capture_output=True, text=True)
    assert fsck.returncode in (0, 1), fsck.stdout + fsck.stderr          # 1: the journal was replayed
    out = subprocess.run(["debugfs", "-R", f"cat {path}", str(copy)], capture_output=True, text=True).stdout
    copy.unlink()
    return out


@pytest.fixture(scope="module")
def node(minimal_build, tmp_path_factory):
    from tests.conftest import RECIPES
    import shutil
    root = tmp_path_factory.mktemp("netboot")
    shutil.copytree(RECIPES, root / "recipes")
    (root / "sites/lab").mkdir(parents=True)
    (root / "sites/lab/hosts.yaml").write_text(HOSTS)
    crypt = subprocess.run(["openssl", "passwd", "-6", PASSWORD], capture_output=True, text=True,
                           check=True).stdout.strip()
    # hpc-node as shipped (nfs, nfs-persistent and iscsi with mutual CHAP), a root password to
    # log in, and the lab site's inventory
    (root / "recipes/node.yaml").write_text(
        f"extends: hpc-node\nsite: lab\naccess: {{root_password_hash: '{crypt}'}}\n"
        "replace: [outputs]\noutputs: {kernel: {}, nfsroot: {}, iscsi: {}, pxe: {}, config: {}}\n")
    distonet("build", "node", recipes=root / "recipes")
    plan = plan_for("node", root / "recipes")
    yield plan
    distonet("clean", "node", recipes=root / "recipes")


def checked(session_checks, seen, then="poweroff"):
    """A console session: log in as root, run each check, then `then`."""
    from distonet.boot.serial import SerialSession

    def session(sock) -> bool:
        s = SerialSession(sock)
        try:
            s.login("root", PASSWORD)
            for name, command in session_checks.items():
                seen[name] = s.run(command)[1]
            if then == "reboot":
                s.send("systemctl reboot\n")
                # the end of a clean shutdown: nothing hung on the network root
                seen["rebooted"] = s.expect(r"reboot: Restarting system", 180)
            else:
                s.send(f"{then}\n")
        finally:
            s.close()
        return True
    return session


NFS_TMPFS_CHECKS = {
    "root": "findmnt -n -o FSTYPE /",
    "lower": "findmnt -n -o FSTYPE,SOURCE /run/distonet-union/lower",
    "write": "echo written-on-the-node > /probe && cat /probe",
    "hostname": "hostname",
    "networkd": "networkctl list --no-legend --no-pager | grep -c unmanaged; ls /run/systemd/network",
    "failed": "systemctl --failed --no-legend --plain",
}


def boot_nfs_tmpfs(node, firmware: str, export):
    """One node's boot in a lab of its own (its own namespaces and servers), and what it saw."""
    from distonet.boot.netboot import lab_for
    seen = {}
    with lab_for(node, export_root=export) as lab:
        result = lab.boot(firmware, "nfs", hostname="node07", console_session=checked(NFS_TMPFS_CHECKS, seen))
    return result, seen, (export / "probe").exists(), (export / "etc/os-release").exists()


def test_pxe_nfs_root_with_a_tmpfs_layer_bios_and_uefi(node, tmp_path):
    """pxelinux (BIOS) and GRUB (UEFI), two nodes side by side, each with its own servers; the
    iPXE script boots node21 again in the persistent test."""
    import functools
    from distonet.boot.parallel import side_by_side
    boots = side_by_side(*(functools.partial(boot_nfs_tmpfs, node, fw, tmp_path / f"export-{fw}")
                           for fw in ("bios", "uefi")))
    for result, seen, probe_on_export, export_whole in boots:
        assert result.reached, result.console[-3000:]
        assert "distonet union: root = read-only root + writable layer on tmpfs" in result.console
        assert seen["root"].strip() == "overlay"
        assert seen["lower"].split()[0] in ("nfs", "nfs4") and ":/srv/distonet/node" in seen["lower"]
        assert seen["write"] == "written-on-the-node\n"
        assert not probe_on_export and export_whole                                    # the export is unchanged
        assert seen["hostname"].strip() == "node07"                                    # from DHCP
        assert "10-distonet-netroot.network" in seen["networkd"]   # the root's interface left to the initramfs
        assert "remount-fs" not in seen["failed"] and "wait-online" not in seen["failed"]  # fit a network root
    assert [r.name for r, *_ in boots] == ["pxe-nfs/bios", "pxe-nfs/uefi"]
    assert leftovers(node.paths) == []


def test_pxe_iscsi_root_through_ipxe_and_the_ibft_with_mutual_chap(node):
    """node12's own inventory entry: iPXE (QEMU's BIOS ROM) logs in to the target with CHAP both
    ways and leaves target, portal, initiator name and secrets in the iBFT, where open-iscsi finds
    them: the kernel command line names none of them, the LUN is untouched by what the node writes.
    (pxelinux and GRUB log in with mutual CHAP from the cpio in the iscsi-persistent test.)"""
    from distonet import chap
    from distonet.boot.netboot import lab_for
    creds = chap.read(node.facts.netboot["chap"])
    lun = node.out_dir / "rootfs.img"
    before = hashlib.sha256(lun.read_bytes()).hexdigest()
    seen = {}
    checks = {
        "root": "findmnt -n -o FSTYPE /",
        "lower": "findmnt -n -o FSTYPE,SOURCE /run/distonet-union/lower",
        "session": "cat /sys/class/iscsi_session/session*/targetname /sys/class/iscsi_session/session*/initiatorname",
        "ibft": "cd /sys/firmware/ibft && cat initiator/initiator-name target0/target-name target0/rev-chap-name",
        "mutual": "cat /sys/class/iscsi_session/session*/username_in",
        "cmdline": "cat /proc/cmdline",
        "write": "echo on-node12 > /probe && cat /probe",
        "hostname": "hostname",
    }
    with lab_for(node) as lab:
        result = lab.boot("ipxe", "iscsi", hostname="node12", mac="52:54:00:00:00:12",
                          console_session=checked(checks, seen))
    assert result.reached, result.console[-3000:]
    assert "distonet iscsi: target, portal, initiator name and CHAP from the firmware's iBFT" in result.console
    assert "distonet union: root = read-only root + writable layer on tmpfs" in result.console
    assert seen["root"].strip() == "overlay" and seen["lower"].split()[0] == "ext4"
    assert seen["session"].split() == ["iqn.2026-11.invalid.distonet:node", "iqn.2026-11.invalid.distonet:node12"]
    assert seen["ibft"].split() == ["iqn.2026-11.invalid.distonet:node12", "iqn.2026-11.invalid.distonet:node",
                                    creds["target_user"]]
    assert seen["mutual"].strip() == creds["target_user"]          # the target proved itself to the node
    assert "iscsi_auto" in seen["cmdline"] and "iscsi_target" not in seen["cmdline"]
    assert "iscsi_initiator" not in seen["cmdline"]
    assert creds["secret"] not in seen["cmdline"] + result.console and creds["target_secret"] not in seen["cmdline"]
    assert seen["write"] == "on-node12\n" and seen["hostname"].strip() == "node12"
    assert hashlib.sha256(lun.read_bytes()).hexdigest() == before    # the shared LUN is read-only
    assert leftovers(node.paths) == []


def test_a_wrong_chap_secret_fails_cleanly(node, tmp_path):
    from distonet import chap
    from distonet.boot.netboot import lab_for
    from distonet.host.run import run
    from distonet.enums import Chap
    creds = dict(chap.read(node.facts.netboot["chap"]), secret="not-the-secret-0")
    wrong = tmp_path / "wrong.cpio"
    chap.cpio(run, {"etc/iscsi.initramfs": chap.initramfs_conf(creds, Chap.mutual)}, wrong, tmp_path)
    with lab_for(node) as lab:
        result = lab.boot("bios", "iscsi", hostname="node11", mac="52:54:00:00:00:11", timeout=240,
                          swap={"iscsi/node.cpio": wrong})
    assert not result.reached
    assert result.failure and ("authenticat" in result.failure.lower() or "authoriz" in result.failure.lower()), \
        result.console[-2000:]
    assert result.seconds < 200              # reported as soon as the login fails, not at the timeout
    assert "NOT reached" in result.line() and result.failure in result.line()
    assert leftovers(node.paths) == []


def test_persistent_nfs_layers_survive_a_reboot_and_stay_per_node(node, tmp_path):
    from distonet.boot.netboot import lab_for
    layers = tmp_path / "layers"
    made = distonet("clones", "node", "--layers", str(layers), "--size-mib", "512",
                    recipes=node.paths.recipes)
    assert "node21" in made.stdout and "node22" in made.stdout and "made" in made.stdout
    again = distonet("clones", "node", "--layers", str(layers), recipes=node.paths.recipes)
    assert again.stdout.count("kept") == 3            # a node's layer is its state: never replaced
    master = sum(f.stat().st_blocks for f in node.out_dir.rglob("*") if f.is_file())
    assert sum(f.stat().st_blocks for f in layers.rglob("*")) * 512 < 64 << 20 < master * 512  # no copy

    def node21():
        first, second = {}, {}
        with lab_for(node, layers_root=layers) as lab:
            r1 = lab.boot("bios", "nfs-persistent", hostname="node21", mac="52:54:00:00:00:21",
                          console_session=checked({"write": "echo kept-by-node21 > /root/probe && sync && cat /root/probe"},
                                                  first, then="reboot"))
            # the reboot through QEMU's iPXE ROM: boot.ipxe chains node21's own iPXE script
            r2 = lab.boot("ipxe", "nfs-persistent", hostname="node21", mac="52:54:00:00:00:21",
                          console_session=checked({"read": "cat /root/probe"}, second))
        return r1, r2, first, second

    def node22():
        other = {}
        with lab_for(node, layers_root=layers) as lab:     # its own servers, the same layers
            r3 = lab.boot("uefi", "nfs-persistent", hostname="node22", mac="52:54:00:00:00:22",
                          console_session=checked({"read": "cat /root/probe 2>&1; echo; cat /proc/cmdline",
                                                   "root": "findmnt -n -r -o FSTYPE,OPTIONS /run/distonet-union/lower",
                                                   "layer": "findmnt -n -r -o FSTYPE,OPTIONS /run/distonet-union/nfs",
                                                   "owner": "stat -c %U:%G /etc/shadow /usr/bin/passwd"}, other))
        return r3, other

    from distonet.boot.parallel import side_by_side
    (r1, r2, first, second), (r3, other) = side_by_side(node21, node22)   # two nodes at once
    for r in (r1, r2, r3):
        assert r.reached, r.console[-3000:]
        assert "writable layer on NFS 10.0.2.2:/srv/distonet/layers/node/node2" in r.console
    assert first["write"] == "kept-by-node21\n" and "rebooted" in first
    assert second["read"] == "kept-by-node21\n"                    # survived the reboot
    assert "No such file" in other["read"] and "distonet.test=22" in other["read"]   # node22: its own layer, its own entry
    for mount in (other["root"], other["layer"]):                  # node22's root and layer: NFSv4.1
        assert mount.split()[0] == "nfs4" and "vers=4.1" in mount, other
    assert other["owner"].split() == ["root:shadow", "root:root"]  # owners by number, mapped by the node
    assert layer_file(layers / "node21/layer.ext4", "/upper/root/probe", tmp_path) == "kept-by-node21\n"                      # on the server, in node21's layer
    assert leftovers(node.paths) == []


# nightly: five minutes of TCG boots; CI boots PXE + iSCSI (mutual CHAP) and the persistent NFS layers
@pytest.mark.nightly
def test_persistent_iscsi_layer_is_the_node_s_own_lun(node, tmp_path):
    """node31 logs in to its own target: the shared root read-only (LUN 1) and its layer (LUN 2);
    what it writes survives a reboot (and the shutdown does not hang on the iSCSI root)."""
    from distonet.boot.netboot import lab_for
    layers = tmp_path / "layers"
    distonet("clones", "node", "--layers", str(layers), "--size-mib", "512", recipes=node.paths.recipes)
    first, second = {}, {}
    checks = {"write": "echo kept-by-node31 > /root/probe && sync && cat /root/probe",
              "luns": "lsblk -n -o NAME,RO,LABEL -S -d; findmnt -n -o SOURCE /run/distonet-union/rw"}
    with lab_for(node, layers_root=layers) as lab:
        r1 = lab.boot("bios", "iscsi-persistent", hostname="node31", mac="52:54:00:00:00:31",
                      console_session=checked(checks, first, then="reboot"))
        r2 = lab.boot("uefi", "iscsi-persistent", hostname="node31", mac="52:54:00:00:00:31",
                      console_session=checked({"read": "cat /root/probe"}, second))
    for r in (r1, r2):
        assert r.reached, r.console[-3000:]
        assert "writable layer on /dev/disk/by-label/distonet-layer" in r.console
        assert "logs in to iqn.2026-11.invalid.distonet:node-node31" in r.console
    assert first["write"] == "kept-by-node31\n" and "rebooted" in first
    assert second["read"] == "kept-by-node31\n"
    assert layer_file(layers / "node31/layer.ext4", "/upper/root/probe", tmp_path) == "kept-by-node31\n"
    assert leftovers(node.paths) == []


def test_a_killed_harness_leaves_no_server_vm_or_namespace(node, tmp_path):
    """SIGKILL (no cleanup code runs): the servers, QEMU and the namespace go with it."""
    script = (
        "from pathlib import Path\nfrom distonet.boot.netboot import lab_for\n"
        "from tests.integration.conftest import plan_for\n"
        f"plan = plan_for('node', Path({str(node.paths.recipes)!r}))\n"
        "with lab_for(plan) as lab:\n"
        "    print(lab.work, flush=True)\n"
        "    lab.boot('bios', 'iscsi', hostname='node11', mac='52:54:00:00:00:11', timeout=600)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    work = proc.stdout.readline().strip()
    assert work.startswith("/"), "the harness did not start"

    def ours() -> list[str]:
        found = []
        for p in os.listdir("/proc"):
            if p.isdigit() and int(p) != proc.pid:
                try:
                    with open(f"/proc/{p}/cmdline", "rb") as fh:
                        argv = fh.read().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if work in argv or str(node.out_dir) in argv or argv.startswith(("rpcbind", "tgtd")):
                    found.append(f"{p}: {argv[:120]}")
        return found
    wait_for(lambda: any("qemu-system" in p for p in ours()), 60, "QEMU to start")
    assert any("tgtd" in p or "sleep infinity" in p or "unshare" in p for p in ours()) or ours()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_for(lambda: ours() == [], 20, "every process of the killed harness to end")
    assert not [m for m in all_mount_points() if m.startswith(work) or m.startswith("/srv/distonet")]
    assert leftovers(node.paths) == []
    subprocess.run(["rm", "-rf", work], check=True)   # its files: a dead process cannot remove them
