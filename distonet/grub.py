"""GRUB for both firmwares, made from the host's GRUB images with grub-mkimage: nothing is
installed into the image and nothing is mounted.

BIOS: boot.img goes into the MBR's code area and core.img into the BIOS boot partition; the
two sector pointers grub-bios-setup would write are written here (grub-bios-setup ships only in
the grub-pc package, which takes over the build host's own boot loader). UEFI: BOOTX64.EFI at the
removable-media path of the ESP. Both read one grub.cfg from the ESP, found by its volume id.
"""

from __future__ import annotations

import struct
from pathlib import Path

from .errors import BuildError
from .layout import SECTOR

GRUB_LIB = Path("/usr/lib/grub")
MODULES = ["part_gpt", "fat", "ext2", "normal", "linux", "search", "search_fs_uuid", "serial",
           "terminal", "configfile", "echo", "test", "gzio", "boot", "minicmd"]
PLATFORM_MODULES = {"i386-pc": ["biosdisk"], "x86_64-efi": ["efi_gop"]}

# Offsets in GRUB's boot.img (include/grub/i386/pc/boot.h).
KERNEL_SECTOR = 0x5C
BOOT_DRIVE = 0x64
DRIVE_CHECK = 0x66
NT_MAGIC = 0x1B8
KERNEL_SEGMENT = 0x800


def early_config(esp_id: str) -> str:
    return (f"search --no-floppy --fs-uuid --set=root {esp_id}\n"
            "set prefix=($root)/boot/grub\n")


def kernel_cmdline(root_uuid: str, extra: list[str] | tuple[str, ...], console: str | None) -> list[str]:
    """The kernel command line a disk boots with (the manifest records it for netboot)."""
    args = [f"root=UUID={root_uuid}", "ro"]
    if console:
        args += ["console=tty0", f"console={console}"]  # the last console= gets /dev/console
    return args + list(extra)


def grub_cfg(title: str, kernel_version: str, root_uuid: str, args: list[str],
             console: str | None, timeout: int = 1) -> str:
    """`title`, `args` and `console` are validated by the recipe model (no quotes, braces or
    newlines), so they cannot break out of the menu entry."""
    lines = []
    if console and console.startswith("ttyS"):
        unit, _, speed = console[4:].partition(",")
        lines += [f"serial --unit={unit or 0} --speed={speed or 115200}",
                  "terminal_input serial console", "terminal_output serial console"]
    lines += [f"set timeout={timeout}", "set default=0",
              f"menuentry '{title}' {{",
              f"  search --no-floppy --fs-uuid --set=root {root_uuid}",
              f"  linux /boot/vmlinuz-{kernel_version} {' '.join(args)}",
              f"  initrd /boot/initrd.img-{kernel_version}",
              "}"]
    return "\n".join(lines) + "\n"


def mkimage_argv(platform: str, output: Path, config: Path, extra: tuple[str, ...] = ()) -> list[str]:
    return ["grub-mkimage", "-O", platform, "-d", str(GRUB_LIB / platform), "-o", str(output),
            "-c", str(config), "-p", "/boot/grub", *MODULES, *PLATFORM_MODULES[platform], *extra]


def patch_bios_boot(mbr: bytes, boot_img: bytes, core_img: bytes, core_lba: int,
                    room_sectors: int) -> tuple[bytes, bytes]:
    """Return (new MBR sector, core.img padded and pointed at itself) for core.img embedded at
    `core_lba`. The MBR keeps its partition table; boot.img's code takes the rest."""
    if len(mbr) != SECTOR or len(boot_img) != SECTOR:
        raise BuildError("boot.img and the MBR must be one sector each")
    nsec = -(-len(core_img) // SECTOR)
    if nsec > room_sectors:
        raise BuildError(f"core.img needs {nsec} sectors, the BIOS boot partition has {room_sectors}")
    new_mbr = bytearray(boot_img[:NT_MAGIC] + mbr[NT_MAGIC:])
    struct.pack_into("<Q", new_mbr, KERNEL_SECTOR, core_lba)
    new_mbr[BOOT_DRIVE] = 0xFF
    new_mbr[DRIVE_CHECK:DRIVE_CHECK + 2] = b"\x90\x90"  # hard disk: skip the floppy/drive check
    core = bytearray(core_img.ljust(nsec * SECTOR, b"\0"))
    # diskboot.img (core's first sector) loads the rest from this blocklist, at its end.
    struct.pack_into("<QHH", core, SECTOR - 12, core_lba + 1, nsec - 1, KERNEL_SEGMENT + (SECTOR >> 4))
    return bytes(new_mbr), bytes(core)
