"""What a diskless node is told to boot: one menu entry per netboot mode, and one entry per host
of the site's inventory, rendered into the pxelinux, GRUB and iPXE files of the pxe output from
the templates in templates/netboot/.

The servers are the DHCP boot server (next-server) unless the recipe names one: initramfs-tools
takes ROOTSERVER from DHCP when `nfsroot=` has no server part, and hooks/initramfs/iscsi does the
same for the iSCSI portal, so a menu made once serves any network whose DHCP points nodes at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_EXPORT = "/srv/distonet/{recipe}"
TITLES = {"nfs": "root over NFS (read-only), changes in RAM",
          "nfs-persistent": "root over NFS (read-only), changes kept in a per-node layer on NFS",
          "iscsi": "root on iSCSI (read-only), changes in RAM",
          "iscsi-persistent": "root on iSCSI (read-only), changes kept in a per-node LUN"}
ISCSI_MODES = ("iscsi", "iscsi-persistent")
LAYER_LABEL = "distonet-layer"   # clones.py makes every layer with it


@dataclass(frozen=True)
class Ibft:
    """An iPXE entry that logs in to the iSCSI target itself (sanhook) and hands it to the kernel
    in the iBFT: the kernel command line names no target, open-iscsi reads the table (iscsi_auto).
    `node` is the host name, or None for iPXE to take it from DHCP (else the MAC address)."""
    uri: str                    # iscsi:SERVER::PORT:LUN:TARGET, ${node} for the host name
    initiator: str
    node: str | None
    credentials: str | None     # pxe/ path of the iPXE script that sets the CHAP settings
    cmdline: str


@dataclass(frozen=True)
class Entry:
    label: str
    title: str
    cmdline: str
    initrds: tuple[str, ...] = field(default=())   # loaded after the initrd (pxe/ paths)
    ibft: Ibft | None = None                        # the iPXE entry's own way to the root


def export_path(template: str | None, recipe: str) -> str:
    return (template or DEFAULT_EXPORT).format(recipe=recipe)


def target_name(iqn: str, recipe: str) -> str:
    return f"{iqn}:{recipe}"


def node_target_name(iqn: str, recipe: str, hostname: str) -> str:
    """A node's own target (iscsi-persistent): the master LUN and its layer LUN."""
    return f"{iqn}:{recipe}-{hostname}"


def initiator_name(iqn: str, hostname: str) -> str:
    return f"{iqn}:{hostname.lower().replace('_', '-')}"


def chap_cpio(recipe: str) -> str:
    return f"iscsi/{recipe}.cpio"


def chap_ipxe(recipe: str) -> str:
    """The CHAP settings for iPXE's own login (iBFT entries), served beside the cpio."""
    return f"iscsi/{recipe}.ipxe"


def layer_dir(layers: str, recipe: str, hostname: str) -> str:
    return f"{layers.format(recipe=recipe).rstrip('/')}/{hostname}"


def nfs_cmdline(export: str, server: str | None, union: str = "tmpfs", version: int = 3) -> list[str]:
    """vers=4 is NFSv4.1 through hooks/initramfs/netroot's nfsmount (klibc's speaks v2 and v3)."""
    root = f"{server}:{export}" if server else export
    return ["root=/dev/nfs", f"nfsroot={root},vers={version},tcp", "ip=dhcp", "boot=nfs", "ro",
            f"distonet.union={union}"]


def iscsi_cmdline(root_uuid: str, target: str, server: str | None, port: int,
                  own_target: str | None = None, ibft: bool = False) -> list[str]:
    """The shared LUN mounted read-only without replaying a journal, never checked; with
    `own_target` (iscsi-persistent) the node logs in to its own target, which also holds its
    layer LUN (hooks/initramfs/iscsi puts the host name for @HOSTNAME@). With `ibft` the target
    comes from the firmware's table, which iPXE wrote (Ibft)."""
    if ibft:
        args = [f"root=UUID={root_uuid}", "iscsi_auto"]
    else:
        args = [f"root=UUID={root_uuid}",
                f"distonet.iscsi_target={own_target}" if own_target else f"iscsi_target_name={target}"]
        args += [f"iscsi_target_ip={server}"] if server else []
        args += [f"iscsi_target_port={port}"] if port != 3260 else []
    union = f"dev:/dev/disk/by-label/{LAYER_LABEL}" if own_target else "tmpfs"
    return args + ["ip=dhcp", "ro", "rootflags=noload", "fsck.mode=skip", f"distonet.union={union}"]


def mode_args(mode: str, recipe: str, netboot, root_uuid: str, hostname: str | None = None,
              nfs_version: int | None = None, ibft: bool = False) -> list[str]:
    """The kernel arguments of one mode; `hostname` for a host's own entry (else from DHCP),
    `nfs_version` for a host that does not take its recipe's, `ibft` for an iPXE login."""
    server = netboot.server
    version = nfs_version or netboot.nfs_version
    if mode == "nfs":
        return nfs_cmdline(export_path(netboot.export, recipe), server, version=version)
    if mode == "nfs-persistent":
        layer = layer_dir(netboot.layers, recipe, hostname or "@HOSTNAME@")
        return nfs_cmdline(export_path(netboot.export, recipe), server, f"nfs:{layer}", version)
    if mode in ISCSI_MODES:
        iqn = netboot.iscsi.iqn
        own = node_target_name(iqn, recipe, hostname or "@HOSTNAME@") if mode == "iscsi-persistent" else None
        args = iscsi_cmdline(root_uuid, target_name(iqn, recipe), server, netboot.iscsi.port, own, ibft)
        return args + ([f"iscsi_initiator={initiator_name(iqn, hostname)}"] if hostname and not ibft else [])
    raise ValueError(f"unknown netboot mode {mode}")


def ibft_used(netboot, hosts) -> bool:
    """Whether an iPXE entry of the recipe or of a host logs in through the iBFT."""
    return any(str(m) in ISCSI_MODES for m in netboot.modes) and (
        netboot.iscsi.ibft or any(h.get("ibft") and h["mode"] in ISCSI_MODES for h in hosts))


def _initrds(mode: str, recipe: str, netboot) -> tuple[str, ...]:
    return (chap_cpio(recipe),) if mode in ISCSI_MODES and str(netboot.iscsi.chap) != "none" else ()


def _console(console: str | None) -> list[str]:
    return ["console=tty0", f"console={console}"] if console else []


def ibft_login(mode: str, recipe: str, netboot, root_uuid: str, tail: list[str],
               hostname: str | None = None) -> Ibft:
    """How an iPXE entry of an iSCSI mode logs in: the target's LUN 1 (the root, in the shared
    target and in a node's own), the node's initiator name as the hook would make it, the
    CHAP settings from pxe/iscsi/<recipe>.ipxe; `tail`: the console and extra arguments."""
    iqn, node = netboot.iscsi.iqn, hostname.lower().replace("_", "-") if hostname else None
    name = node or "${node}"
    target = node_target_name(iqn, recipe, name) if mode == "iscsi-persistent" else target_name(iqn, recipe)
    uri = f"iscsi:{netboot.server or '${next-server}'}::{netboot.iscsi.port}:1:{target}"
    args = mode_args(mode, recipe, netboot, root_uuid, hostname, ibft=True)
    return Ibft(uri, f"{iqn}:{name}", node, chap_ipxe(recipe) if str(netboot.iscsi.chap) != "none" else None,
                " ".join(args + tail))


def entries(recipe: str, netboot, root_uuid: str, console: str | None, extra: tuple[str, ...]) -> list[Entry]:
    """The recipe's menu: one entry per mode, the first the default."""
    tail = _console(console) + list(extra)
    return [Entry(str(mode), f"{recipe}: {TITLES[str(mode)]}",
                  " ".join(mode_args(str(mode), recipe, netboot, root_uuid) + tail),
                  _initrds(str(mode), recipe, netboot),
                  ibft_login(str(mode), recipe, netboot, root_uuid, tail)
                  if netboot.iscsi.ibft and str(mode) in ISCSI_MODES else None)
            for mode in netboot.modes]


def host_entry(host: dict, recipe: str, netboot, root_uuid: str, console: str | None,
               extra: tuple[str, ...]) -> Entry:
    """A host's own entry (inventory.py): its mode, its layer and initiator, its arguments."""
    mode = host["mode"]
    args = mode_args(mode, recipe, netboot, root_uuid, host["hostname"], host.get("nfs_version"))
    tail = _console(console) + list(extra) + list(host.get("args", ()))
    ibft = netboot.iscsi.ibft if host.get("ibft") is None else host["ibft"]
    return Entry(host["hostname"], f"{host['hostname']}: {recipe}, {TITLES[mode]}", " ".join(args + tail),
                 _initrds(mode, recipe, netboot),
                 ibft_login(mode, recipe, netboot, root_uuid, tail, host["hostname"])
                 if ibft and mode in ISCSI_MODES else None)


def mac_dashes(mac: str) -> str:
    return mac.lower().replace(":", "-")


def host_files(mac: str) -> dict[str, str]:
    """Where each loader looks for a machine's own configuration (pxe/ paths, by template)."""
    return {"pxelinux.cfg.j2": f"pxe/pxelinux.cfg/01-{mac_dashes(mac)}",
            "grub.cfg.j2": f"pxe/grub/hosts/{mac.lower()}.cfg",
            "boot.ipxe.j2": f"pxe/hosts/{mac_dashes(mac)}.ipxe"}


def serial_of(console: str | None) -> dict | None:
    """pxelinux/GRUB serial settings from a console= value such as ttyS0,115200."""
    if not console or not console.startswith("ttyS"):
        return None
    port, _, speed = console[4:].partition(",")
    return {"port": int(port or 0), "speed": int((speed or "115200").rstrip("n8"))}


def templates_digest() -> str:
    """The templates' content and this module's (the entries): a change remakes pxe and config."""
    import hashlib
    from . import templates
    return hashlib.sha256((templates.digest("netboot") + hashlib.sha256(Path(__file__).read_bytes()).hexdigest())
                          .encode()).hexdigest()


def render(name: str, **values) -> str:
    from . import templates
    return templates.render(f"netboot/{name}", **values)


def menus(recipe: str, boot, netboot, root_uuid: str, hosts=()) -> dict[str, str]:
    """Every menu file of the pxe tree: the recipe's three, then each host's three."""
    extra = tuple(boot.cmdline)
    common = dict(recipe=recipe, serial=serial_of(boot.console), kernel="vmlinuz", initrd="initrd.img")
    grub = {"kernel": "/vmlinuz", "initrd": "/initrd.img"}

    def three(entries_: list[Entry], files: dict[str, str], host: str | None) -> dict[str, str]:
        values = {**common, "entries": entries_, "host": host}
        return {rel: render(t, **{**values, **(grub if t.startswith("grub") else {})}) for t, rel in files.items()}

    out = three(entries(recipe, netboot, root_uuid, boot.console, extra),
                {"pxelinux.cfg.j2": "pxe/pxelinux.cfg/default", "grub.cfg.j2": "pxe/grub/grub.cfg",
                 "boot.ipxe.j2": "pxe/boot.ipxe"}, None)
    for h in hosts:
        out.update(three([host_entry(h, recipe, netboot, root_uuid, boot.console, extra)],
                         host_files(h["mac"]), h["hostname"]))
    return out
