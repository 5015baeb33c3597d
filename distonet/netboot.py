"""What a diskless node is told to boot: one menu entry per netboot mode, rendered into the
pxelinux, GRUB and iPXE files of the pxe output from the templates in templates/netboot/.

The NFS server is the DHCP boot server (next-server) unless the site names one: initramfs-tools
takes ROOTSERVER from DHCP when `nfsroot=` has no server part, so a menu made once serves any
network whose DHCP points nodes at the TFTP/NFS server.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_EXPORT = "/srv/distonet/{recipe}"


@dataclass(frozen=True)
class Entry:
    label: str
    title: str
    cmdline: str


def export_path(template: str | None, recipe: str) -> str:
    return (template or DEFAULT_EXPORT).format(recipe=recipe)


def nfs_cmdline(export: str, server: str | None, console: str | None, extra: tuple[str, ...]) -> list[str]:
    root = f"{server}:{export}" if server else export
    args = ["root=/dev/nfs", f"nfsroot={root},vers=3,tcp", "ip=dhcp", "boot=nfs", "ro", "distonet.union=tmpfs"]
    if console:
        args += ["console=tty0", f"console={console}"]
    return args + list(extra)


def entries(recipe: str, modes, export: str, server: str | None, console: str | None,
            extra: tuple[str, ...]) -> list[Entry]:
    out = []
    for mode in modes:
        if str(mode) == "nfs":
            out.append(Entry("nfs", f"{recipe}: root over NFS (read-only), changes in RAM",
                             " ".join(nfs_cmdline(export, server, console, extra))))
    return out


def serial_of(console: str | None) -> dict | None:
    """pxelinux/GRUB serial settings from a console= value such as ttyS0,115200."""
    if not console or not console.startswith("ttyS"):
        return None
    port, _, speed = console[4:].partition(",")
    return {"port": int(port or 0), "speed": int((speed or "115200").rstrip("n8"))}


def templates_digest() -> str:
    """The templates' content: a changed template remakes the pxe and config outputs."""
    from . import templates
    return templates.digest("netboot")


def render(name: str, **values) -> str:
    from . import templates
    return templates.render(f"netboot/{name}", **values)
