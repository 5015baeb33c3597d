"""A diskless node, booted as on the site's network: PXE (pxelinux on BIOS, GRUB on UEFI) from
the generated pxe/ tree, the root read-only over NFS from nfs-ganesha started with the generated
config, a tmpfs layer on top. All of it in a network namespace with only loopback."""

import shutil
import subprocess

import pytest

from tests.integration.conftest import distonet, leftovers, plan_for

pytestmark = pytest.mark.integration

PASSWORD = "distonet-test"


@pytest.fixture(scope="module")
def node(minimal_build, tmp_path_factory):
    from tests.conftest import RECIPES
    root = tmp_path_factory.mktemp("netboot")
    shutil.copytree(RECIPES, root / "recipes")
    crypt = subprocess.run(["openssl", "passwd", "-6", PASSWORD], capture_output=True, text=True,
                           check=True).stdout.strip()
    # hpc-node as shipped (netboot modes, nfsroot, pxe, config), with a root password to log in
    (root / "recipes/node.yaml").write_text(
        f"extends: hpc-node\naccess: {{root_password_hash: '{crypt}'}}\n"
        "replace: [outputs]\noutputs: {kernel: {}, nfsroot: {}, pxe: {}, config: {}}\n")
    distonet("build", "node", recipes=root / "recipes")
    plan = plan_for("node", root / "recipes")
    yield plan
    distonet("clean", "node", recipes=root / "recipes")


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_pxe_nfs_root_with_a_tmpfs_layer(node, firmware, tmp_path):
    from distonet.boot.netboot import boot_pxe_nfs
    from distonet.boot.serial import SerialSession
    export = tmp_path / "export"
    seen = {}
    checks = {
        "root": "findmnt -n -o FSTYPE /",
        "lower": "findmnt -n -o FSTYPE,SOURCE /run/distonet-union/lower",
        "write": "echo written-on-the-node > /probe && cat /probe",
        "hostname": "hostname",
        "networkd": "networkctl list --no-legend --no-pager | grep -c unmanaged; ls /run/systemd/network",
    }

    def session(sock) -> bool:
        s = SerialSession(sock)
        try:
            s.login("root", PASSWORD)
            for name, command in checks.items():
                seen[name] = s.run(command)[1]
            s.send("poweroff\n")
        finally:
            s.close()
        return True

    result = boot_pxe_nfs(node.out_dir, firmware, "/srv/distonet/node", paths=node.paths,
                          console_session=session, hostname="node07", export_root=export)
    assert result.reached, result.console[-3000:]
    assert "distonet union: root = read-only root + writable layer on tmpfs" in result.console
    assert seen["root"].strip() == "overlay"
    assert seen["lower"].split()[0] in ("nfs", "nfs4") and ":/srv/distonet/node" in seen["lower"]
    assert seen["write"] == "written-on-the-node\n"
    assert not (export / "probe").exists() and (export / "etc/os-release").exists()  # the export is unchanged
    assert seen["hostname"].strip() == "node07"                                       # from DHCP
    assert "10-distonet-netroot.network" in seen["networkd"]   # the root's interface left to the initramfs
    assert leftovers(node.paths) == []
