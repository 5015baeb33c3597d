"""pxe: a TFTP tree for the recipe's diskless modes — pxelinux for BIOS, a GRUB EFI network image
for UEFI, an iPXE script — each with one menu entry per netboot mode and a file of its own for
each inventory host (netboot.py), the kernel and initrd from the kernel output, and for the iSCSI
root with CHAP the credentials cpio loaded after the initrd (chap.py, mode 0600) and, for iPXE
entries that log in themselves (iBFT), an iPXE script that sets them. Serve pxe/ as the TFTP root."""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import chap, netboot
from ..fsutil import atomic_path, write_atomic
from ..manifest import Artifact
from .base import Output, OutputContext

PXELINUX = Path("/usr/lib/PXELINUX/pxelinux.0")
LDLINUX = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
GRUB_EFI_DIR = Path("/usr/lib/grub/x86_64-efi")
GRUB_NET_MODULES = ["normal", "configfile", "linux", "echo", "test", "efinet", "tftp", "net", "serial",
                    "terminal", "gzio", "part_gpt", "part_msdos"]
FILES = ["pxe/pxelinux.0", "pxe/ldlinux.c32", "pxe/pxelinux.cfg/default", "pxe/grubnetx64.efi",
         "pxe/grub/grub.cfg", "pxe/boot.ipxe", "pxe/vmlinuz", "pxe/initrd.img"]
FORMATS = {"pxelinux.cfg/": "pxelinux-menu", "grub/": "grub-menu", "boot.ipxe": "ipxe-script", "hosts/": "ipxe-script"}


def grub_mkimage_argv(dest: Path) -> list[str]:
    # No device in the prefix: GRUB takes (tftp,<server>) from the firmware's network boot.
    return ["grub-mkimage", "-O", "x86_64-efi", "-d", str(GRUB_EFI_DIR), "-o", str(dest), "-p", "/grub",
            *GRUB_NET_MODULES]


class Pxe(Output):
    name = "pxe"
    needs = ("kernel",)
    reads = ("boot", "netboot")
    tools = ("grub-mkimage", "cpio")
    version = 2

    @classmethod
    def content_digest(cls) -> str:
        return netboot.templates_digest()

    @classmethod
    def files(cls, options) -> list[str]:
        return list(FILES)

    @classmethod
    def make(cls, ctx: OutputContext) -> list[Artifact]:
        from ..errors import ToolMissing
        for f in (PXELINUX, LDLINUX):
            if not f.is_file():
                raise ToolMissing(f"{f}: not found", hint="run ./setup.sh (it installs pxelinux and syslinux-common)")
        out = ctx.out
        (out / "pxe/pxelinux.cfg").mkdir(parents=True, exist_ok=True)
        (out / "pxe/grub").mkdir(parents=True, exist_ok=True)
        copies = {"pxe/pxelinux.0": PXELINUX, "pxe/ldlinux.c32": LDLINUX,
                  "pxe/vmlinuz": ctx.input("kernel", "kernel"), "pxe/initrd.img": ctx.input("kernel", "initrd")}
        for rel, src in copies.items():
            with atomic_path(out / rel) as tmp:
                shutil.copyfile(src, tmp)
        with atomic_path(out / "pxe/grubnetx64.efi") as tmp:
            ctx.runner(grub_mkimage_argv(tmp))
        arts = [Artifact.of("pxe", out / rel, out, format=fmt) for rel, fmt in (
            ("pxe/pxelinux.0", "pxelinux"), ("pxe/grubnetx64.efi", "grub-efi-net"), ("pxe/vmlinuz", "bzImage"),
            ("pxe/initrd.img", "initramfs"), ("pxe/ldlinux.c32", "syslinux-module"))]
        nb, site = ctx.reads["netboot"], ctx.build.netboot
        for rel, text in netboot.menus(ctx.build.recipe, ctx.reads["boot"], nb, ctx.build.root_uuid,
                                       site.get("hosts", ())).items():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(out / rel) as tmp:
                tmp.write_text(text)
            fmt = next(f for prefix, f in FORMATS.items() if rel[len("pxe/"):].startswith(prefix))
            arts.append(Artifact.of("pxe", out / rel, out, format=fmt))
        if {str(m) for m in nb.modes} & set(netboot.ISCSI_MODES) and site.get("chap"):
            rel = netboot.chap_cpio(ctx.build.recipe)
            (out / "pxe" / rel).parent.mkdir(parents=True, exist_ok=True)
            conf = chap.initramfs_conf(chap.read(site["chap"]), nb.iscsi.chap)
            with atomic_path(out / "pxe" / rel) as tmp:
                chap.cpio(ctx.runner, {"etc/iscsi.initramfs": conf}, tmp, ctx.work)
                tmp.chmod(0o600)
            arts.append(Artifact.of("pxe", out / "pxe" / rel, out, format="cpio-newc"))
            if netboot.ibft_used(nb, site.get("hosts", ())):
                rel = netboot.chap_ipxe(ctx.build.recipe)
                write_atomic(out / "pxe" / rel, chap.ipxe_settings(chap.read(site["chap"]), nb.iscsi.chap), 0o600)
                arts.append(Artifact.of("pxe", out / "pxe" / rel, out, format="ipxe-script"))
        return arts
