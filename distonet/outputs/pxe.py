"""pxe: a TFTP tree for the recipe's diskless modes — pxelinux for BIOS, a GRUB EFI network image
for UEFI, an iPXE script — each with one menu entry per netboot mode (netboot.py), and the kernel
and initrd from the kernel output. Serve pxe/ as the TFTP root."""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import netboot
from ..fsutil import atomic_path
from ..manifest import Artifact
from .base import Output, OutputContext

PXELINUX = Path("/usr/lib/PXELINUX/pxelinux.0")
LDLINUX = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
GRUB_EFI_DIR = Path("/usr/lib/grub/x86_64-efi")
GRUB_NET_MODULES = ["normal", "configfile", "linux", "echo", "test", "efinet", "tftp", "net", "serial",
                    "terminal", "gzio", "part_gpt", "part_msdos"]
FILES = ["pxe/pxelinux.0", "pxe/ldlinux.c32", "pxe/pxelinux.cfg/default", "pxe/grubnetx64.efi",
         "pxe/grub/grub.cfg", "pxe/boot.ipxe", "pxe/vmlinuz", "pxe/initrd.img"]


def grub_mkimage_argv(dest: Path) -> list[str]:
    # No device in the prefix: GRUB takes (tftp,<server>) from the firmware's network boot.
    return ["grub-mkimage", "-O", "x86_64-efi", "-d", str(GRUB_EFI_DIR), "-o", str(dest), "-p", "/grub",
            *GRUB_NET_MODULES]


def menus(recipe: str, boot, netboot_) -> dict[str, str]:
    """The three menu files, rendered from the templates."""
    export = netboot.export_path(netboot_.export, recipe)
    entries = netboot.entries(recipe, netboot_.modes, export, netboot_.server, boot.console, tuple(boot.cmdline))
    values = dict(recipe=recipe, entries=entries, serial=netboot.serial_of(boot.console),
                  kernel="vmlinuz", initrd="initrd.img")
    return {"pxe/pxelinux.cfg/default": netboot.render("pxelinux.cfg.j2", **values),
            "pxe/grub/grub.cfg": netboot.render("grub.cfg.j2", **{**values, "kernel": "/vmlinuz", "initrd": "/initrd.img"}),
            "pxe/boot.ipxe": netboot.render("boot.ipxe.j2", **values)}


class Pxe(Output):
    name = "pxe"
    needs = ("kernel",)
    reads = ("boot", "netboot")
    tools = ("grub-mkimage",)
    version = 1

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
        for rel, text in menus(ctx.build.recipe, ctx.reads["boot"], ctx.reads["netboot"]).items():
            with atomic_path(out / rel) as tmp:
                tmp.write_text(text)
        return [Artifact.of("pxe", out / rel, out, format=fmt) for rel, fmt in (
            ("pxe/pxelinux.0", "pxelinux"), ("pxe/grubnetx64.efi", "grub-efi-net"),
            ("pxe/pxelinux.cfg/default", "pxelinux-menu"), ("pxe/grub/grub.cfg", "grub-menu"),
            ("pxe/boot.ipxe", "ipxe-script"), ("pxe/vmlinuz", "bzImage"), ("pxe/initrd.img", "initramfs"),
            ("pxe/ldlinux.c32", "syslinux-module"))]
