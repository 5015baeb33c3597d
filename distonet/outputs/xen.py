"""xen: an xl domain config (xen.cfg) for the recipe's disk, checked by Xen's own
parser (xl.py) before it appears.

- PVH (the default): dom0 starts the image's kernel and initrd with the image's command line,
  the console on hvc0 (Xen's) as well as ttyS0; the disk is the root file system image
  (rootfs.img), which is also what an LV holds.
- HVM: the partitioned disk (disk.raw) boots with its own GRUB, as on any PC.
- PV: pvgrub2 (grub-xen-host) reads the disk's grub.cfg.
The disk is a file on dom0 or a logical volume (`phy:` semantics: xl takes a block device as
`target=`)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from .. import templates, xl
from ..fsutil import atomic_path
from ..manifest import Artifact
from .base import Options, Output, OutputContext


class XenOptions(Options):
    type: Literal["pvh", "hvm", "pv"] = Field("pvh", description="pvh: dom0 starts the kernel; hvm: the disk's "
                                                                 "GRUB, emulated firmware; pv: pvgrub2")
    disk: Literal["file", "lv"] = Field("file", description="the disk as a file on dom0 or a logical volume")
    disk_path: Optional[str] = Field(None, pattern=r"^/[A-Za-z0-9._/{}+-]*$",
                                     description="default /var/lib/xen/images/{recipe}.img, or /dev/vg0/{recipe} for an LV")
    kernel_dir: str = Field("/var/lib/xen/boot/{recipe}", pattern=r"^/[A-Za-z0-9._/{}+-]*$",
                            description="PVH: where dom0 keeps vmlinuz and initrd.img")
    memory_mib: int = Field(1024, ge=128, le=4 << 20)
    vcpus: int = Field(2, ge=1, le=512)
    bridge: str = Field("xenbr0", pattern=r"^[A-Za-z0-9._-]{1,15}$", description="dom0's bridge for the NIC")
    mac: Optional[str] = Field(None, pattern=r"^00:16:3[eE](:[0-9a-fA-F]{2}){3}$",
                               description="a fixed MAC address (Xen's prefix 00:16:3e); default: xl makes one")


def xen_cmdline(cmdline: tuple[str, ...]) -> str:
    """The image's own arguments with Xen's console last (the kernel's /dev/console): hvc0
    under Xen; where it does not exist (QEMU, HVM), the kernel keeps ttyS0."""
    return " ".join([a for a in cmdline if not a.startswith("console=")]
                    + [a for a in cmdline if a.startswith("console=") and not a.startswith("console=tty0")]
                    + ["console=hvc0"])


def image_for(o: XenOptions) -> tuple[str, str]:
    """(the output whose artifact is the domain's disk, its kind)."""
    return ("disk", "disk") if o.type in ("hvm", "pv") else ("rootfs", "rootfs")


def domain_cfg(recipe: str, o: XenOptions, cmdline: tuple[str, ...], image: str, size_mib: int) -> str:
    default = "/dev/vg0/{recipe}" if o.disk == "lv" else "/var/lib/xen/images/{recipe}.img"
    return templates.render("xen/domain.cfg.j2", recipe=recipe, name=recipe, type=o.type, disk=o.disk,
                            target=(o.disk_path or default).format(recipe=recipe), image=image,
                            size_mib=size_mib, kernel_dir=o.kernel_dir.format(recipe=recipe),
                            cmdline=xen_cmdline(cmdline), memory_mib=o.memory_mib, vcpus=o.vcpus,
                            bridge=o.bridge, mac=o.mac)


REQUIRED = {"pvh": ("kernel", "ramdisk", "cmdline"), "pv": ("kernel",), "hvm": ("boot",)}


class Xen(Output):
    name = "xen"
    Options = XenOptions
    # PVH takes the root image and the kernel; HVM and PV the partitioned disk
    needs = ("rootfs", "kernel", "disk")

    @classmethod
    def content_digest(cls) -> str:
        return templates.digest("xen")

    @classmethod
    def files(cls, options) -> list[str]:
        return ["xen.cfg"]

    @classmethod
    def make(cls, ctx: OutputContext) -> list[Artifact]:
        o, recipe = ctx.options, ctx.build.recipe
        image = ctx.input(*image_for(o))
        size_mib = -(-image.stat().st_size // (1 << 20))
        final = ctx.out / "xen.cfg"
        with atomic_path(final) as tmp:
            tmp.write_text(domain_cfg(recipe, o, ctx.build.cmdline, image.name, size_mib))
            xl.parse(tmp, strings=("name", "type", *REQUIRED[o.type][:1]), longs=("memory", "vcpus"),
                     lists=("disk", "vif"))
        return [Artifact.of("xen", final, ctx.out, format=f"xl-{o.type}")]
