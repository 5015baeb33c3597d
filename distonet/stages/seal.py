"""seal: remove what must not ship, set what makes the image itself, record its packages.

Removed: apt caches and lists, logs, the build host's resolv.conf, hostname and proxy settings,
machine-id contents, ssh host keys (regenerated at first boot by a drop-in for ssh.service).
Set: hostname, hosts, fstab (root by UUID), root's password or keys, DHCP via systemd-networkd.
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

from ..ledger import Ledger
from ..plan import BuildPlan, Stage
from ..run import Runner
from . import mount_for_writing

SSH_KEYGEN_DROPIN = """\
# distonet: images ship without host keys; make them on first boot, before sshd checks its config.
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""

DHCP_NETWORK = """\
# distonet: DHCP on every Ethernet interface (recipe key network.dhcp)
[Match]
Type=ether

[Network]
DHCP=yes
"""

REMOVE_GLOBS = [
    "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/cache/apt/archives/partial/*",
    "var/lib/apt/lists/*_*", "var/lib/apt/lists/partial/*", "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old", "var/log/apt/*", "var/log/*.log", "var/log/journal/*",
    "etc/ssh/ssh_host_*", "etc/apt/apt.conf.d/*proxy*", "etc/resolv.conf",
    "var/lib/dbus/machine-id", "tmp/*", "var/tmp/*", "root/.bash_history",
]


def _remove(root: Path, pattern: str) -> None:
    for path in glob.glob(str(root / pattern)):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def fstab(root_uuid: str) -> str:
    return f"# made by distonet\nUUID={root_uuid} / ext4 errors=remount-ro 0 1\n"


def hosts(hostname: str) -> str:
    return f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def seal_tree(root: Path, inputs: dict, runner: Runner) -> None:
    for pattern in REMOVE_GLOBS:
        _remove(root, pattern)
    (root / "etc/machine-id").write_text("")  # empty: systemd makes a new one at first boot
    (root / "etc/hostname").write_text(inputs["hostname"] + "\n")
    (root / "etc/hosts").write_text(hosts(inputs["hostname"]))
    (root / "etc/fstab").write_text(fstab(inputs["root_uuid"]))
    if (root / "usr/sbin/sshd").exists():
        dropin = root / "etc/systemd/system/ssh.service.d"
        dropin.mkdir(parents=True, exist_ok=True)
        (dropin / "distonet-hostkeys.conf").write_text(SSH_KEYGEN_DROPIN)
    if inputs.get("network", {}).get("dhcp") and (root / "usr/lib/systemd/system/systemd-networkd.service").exists():
        netdir = root / "etc/systemd/network"
        netdir.mkdir(parents=True, exist_ok=True)
        (netdir / "80-distonet-dhcp.network").write_text(DHCP_NETWORK)
        # The image's own systemctl, offline: it knows its units' [Install] sections.
        runner(["chroot", str(root), "systemctl", "enable", "systemd-networkd.service"])
    access = inputs["access"]
    # Root stays locked ('*' in shadow, as debootstrap leaves it) unless the recipe opens it.
    password = access.get("root_password_hash") or "*"
    runner(["usermod", "--root", str(root), "-p", password, "root"])
    if access.get("ssh_keys"):
        ssh = root / "root/.ssh"
        ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh / "authorized_keys").write_text("".join(k.strip() + "\n" for k in access["ssh_keys"]))
        (ssh / "authorized_keys").chmod(0o600)


def package_list(root: Path, runner: Runner) -> list[dict]:
    out = runner(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W",
                  "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n"],
                 capture=True).stdout
    pkgs = []
    for line in out.splitlines():
        status, name, version, arch = line.split("\t")
        if status.strip() == "ii":
            pkgs.append({"name": name, "version": version, "architecture": arch})
    return sorted(pkgs, key=lambda p: p["name"])


def make(plan: BuildPlan, stage: Stage, partial: Path, ledger: Ledger, runner: Runner) -> dict:
    merged = mount_for_writing(plan, stage, partial, ledger)
    seal_tree(merged, dict(stage.inputs), runner)
    pkgs = package_list(merged, runner)
    return {"packages": pkgs}
