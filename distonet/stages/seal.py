"""seal: remove what must not ship, set what makes the image itself, record its packages.

Removed: apt caches and lists, logs, the build host's resolv.conf, hostname and proxy settings,
machine-id contents, ssh host keys (regenerated at first boot by a drop-in for ssh.service).
Set: hostname (or none: from DHCP), hosts, fstab (root by UUID), root's password or keys, DHCP
via systemd-networkd and DNS via systemd-resolved when the image has it.
"""

from __future__ import annotations

import glob
import os
import shutil
import uuid
from pathlib import Path

from ..digest import digest
from ..host.run import Runner
from ..tree import package_list
from .base import StageContext, StageKind

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
# Never drop an address networkd did not set or a lease on stop: on a diskless node the root
# file system is reached through this interface (configured by the initrd before networkd).
KeepConfiguration=yes
"""

REMOVE_GLOBS = [
    "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/cache/apt/archives/partial/*",
    "var/lib/apt/lists/*_*", "var/lib/apt/lists/partial/*", "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old", "var/log/apt/*", "var/log/*.log", "var/log/journal/*",
    "etc/ssh/ssh_host_*", "etc/apt/apt.conf.d/*proxy*",
    "var/lib/dbus/machine-id", "tmp/*", "var/tmp/*", "root/.bash_history",
    "var/cache/ldconfig/aux-cache",     # ldconfig's cache of file times: remade at first use
]


def _remove(root: Path, pattern: str) -> None:
    for path in glob.glob(str(root / pattern)):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


SSHD_KEYS_ONLY = ("# made by distonet: keys only (access.ssh_password_login: true in the recipe opens passwords)\n"
                  "PasswordAuthentication no\nKbdInteractiveAuthentication no\n")


def _apt_uid(root: Path) -> int:
    passwd = root / "etc/passwd"
    for line in passwd.read_text().splitlines() if passwd.is_file() else []:
        fields = line.split(":")
        if fields[0] == "_apt" and len(fields) > 2 and fields[2].isdigit():
            return int(fields[2])
    return 0


def fstab(root_uuid: str) -> str:
    return f"# made by distonet\nUUID={root_uuid} / ext4 errors=remount-ro 0 1\n"


def hosts(hostname: str | None) -> str:
    own = f"127.0.1.1\t{hostname}\n" if hostname else ""
    return f"127.0.0.1\tlocalhost\n{own}::1\tlocalhost ip6-localhost ip6-loopback\n"


def seal_tree(root: Path, inputs: dict, runner: Runner) -> None:
    for pattern in REMOVE_GLOBS:
        _remove(root, pattern)
    for sources in (root / "etc/apt/sources.list.d").glob("distonet-*.sources"):
        text = sources.read_text()
        if "URIs: file:" in text and "Enabled: no" not in text:  # the build host's path: not on a node
            sources.write_text(text + "Enabled: no\n")
    for partial in ("var/cache/apt/archives/partial", "var/lib/apt/lists/partial"):
        # apt gives these to _apt when it downloads: whether it did in the build depends on
        # the host's caches, not on the image; the owner apt would give them, always
        if (root / partial).is_dir():
            os.chown(root / partial, _apt_uid(root), 0)
            (root / partial).chmod(0o700)
    resolv = root / "etc/resolv.conf"
    if resolv.exists() and not resolv.is_symlink():
        resolv.unlink()  # the build host's resolvers: never shipped
    (root / "etc/machine-id").write_text("")  # empty: systemd makes a new one at first boot
    hostname = inputs["hostname"]
    if hostname:
        (root / "etc/hostname").write_text(hostname + "\n")
    else:  # null: the name comes from DHCP (diskless nodes share one image)
        (root / "etc/hostname").unlink(missing_ok=True)
    (root / "etc/hosts").write_text(hosts(hostname))
    (root / "etc/fstab").write_text(fstab(inputs["root_uuid"]))
    for name in ("hostname", "hosts", "fstab"):  # 0644 whatever the file it replaced had
        if (root / "etc" / name).exists():
            (root / "etc" / name).chmod(0o644)
    if (root / "usr/sbin/sshd").exists():
        dropin = root / "etc/systemd/system/ssh.service.d"
        dropin.mkdir(parents=True, exist_ok=True)
        (dropin / "distonet-hostkeys.conf").write_text(SSH_KEYGEN_DROPIN)
        if not inputs["access"].get("ssh_password_login"):
            # Debian's sshd takes passwords unless told not to; sshd_config includes these first.
            conf = root / "etc/ssh/sshd_config.d"
            conf.mkdir(parents=True, exist_ok=True)
            (conf / "00-distonet.conf").write_text(SSHD_KEYS_ONLY)
    if inputs.get("network", {}).get("dhcp") and (root / "usr/lib/systemd/system/systemd-networkd.service").exists():
        netdir = root / "etc/systemd/network"
        netdir.mkdir(parents=True, exist_ok=True)
        (netdir / "80-distonet-dhcp.network").write_text(DHCP_NETWORK)
        # The image's own systemctl, offline: it knows its units' [Install] sections.
        units = ["systemd-networkd.service"]
        if (root / "usr/lib/systemd/system/systemd-resolved.service").exists():
            # DNS after boot: resolved takes the servers DHCP gives; resolv.conf points at its stub.
            units.append("systemd-resolved.service")
            resolv.unlink(missing_ok=True)
            resolv.symlink_to("../run/systemd/resolve/stub-resolv.conf")
        runner(["chroot", str(root), "systemctl", "enable", *units])
    access = inputs["access"]
    # Root stays locked ('*' in shadow, as debootstrap leaves it) unless the recipe opens it.
    # The hash goes through stdin, never a command line another user could read in ps.
    password = access.get("root_password_hash") or "*"
    runner(["chpasswd", "--root", str(root), "--encrypted"], input=f"root:{password}\n")
    if access.get("ssh_keys"):
        ssh = root / "root/.ssh"
        ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh / "authorized_keys").write_text("".join(k.strip() + "\n" for k in access["ssh_keys"]))
        (ssh / "authorized_keys").chmod(0o600)


class Seal(StageKind):
    kind = "seal"
    doc = "the image's identity"
    order = 100
    version = 7
    tools = ("dpkg-query", "chpasswd")

    @classmethod
    def instances(cls, recipe, facts):
        yield "seal", {"hostname": recipe.hostname, "access": recipe.access.model_dump(mode="json"),
                       "network": recipe.network.model_dump(mode="json")}

    @classmethod
    def complete(cls, inputs, parent_key):
        # The root filesystem's UUID is part of what seal writes (fstab), derived from what it depends on.
        return {**inputs, "root_uuid": root_uuid(parent_key, inputs)}

    @classmethod
    def make(cls, ctx: StageContext) -> dict:
        merged = ctx.mount_for_writing()
        seal_tree(merged, dict(ctx.inputs), ctx.runner)
        return {"packages": package_list(merged, ctx.runner)}


_UUID_NS = uuid.UUID("6f1f8a52-5d1e-4c1b-9a43-0d15f0a7e001")


def root_uuid(parent_key: str | None, inputs: dict) -> str:
    return str(uuid.uuid5(_UUID_NS, digest({"parent": parent_key, **inputs})))
