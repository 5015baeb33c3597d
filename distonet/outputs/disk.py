"""disk.raw: a GPT disk that boots with BIOS and UEFI. BIOS boot partition (GRUB core.img),
an ESP built with mtools (no vfat needed in the build host's kernel), and rootfs.img as the
root partition. Everything is written at offsets into one file: no loop device, no mount."""

from __future__ import annotations

import uuid
from pathlib import Path

from pydantic import Field

from .. import grub
from ..enums import Firmware
from ..errors import BuildError
from ..fsutil import atomic_path, copy_into
from ..layout import MIB, SECTOR, disk_layout
from ..manifest import Artifact
from ..reproducible import epoch_env
from ..tree import find_kernel
from .base import Options, Output, OutputContext

MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1"}


def mtools_env(epoch: int) -> dict[str, str]:
    """mtools' and mkfs.fat's environment: dates from the build's epoch (mkfs.fat also needs
    --invariant for its volume label's time)."""
    return {**MTOOLS_ENV, **epoch_env(epoch)}


class DiskOptions(Options):
    esp_mib: int = Field(32, ge=32, le=4096, description="size of the EFI system partition")


class Disk(Output):
    name = "disk"
    Options = DiskOptions
    needs = ("rootfs",)
    reads = ("boot",)
    needs_tree = True  # the kernel version for grub.cfg
    tools = ("sfdisk", "mkfs.fat", "mmd", "mcopy", "grub-mkimage")
    version = 2     # 2: the ESP's dates from the build's epoch

    @classmethod
    def files(cls, options) -> list[str]:
        return ["disk.raw"]

    @classmethod
    def make(cls, ctx: OutputContext) -> list[Artifact]:
        boot, build, runner, work = ctx.reads["boot"], ctx.build, ctx.runner, ctx.work
        rootfs = ctx.input("rootfs", "rootfs")
        layout = disk_layout(rootfs.stat().st_size, ctx.options.esp_mib)
        version = find_kernel(ctx.tree)[0]
        cfg = grub.grub_cfg(f"{build.recipe} ({version})", version, build.root_uuid,
                            list(build.cmdline), boot.console)
        final = ctx.out / "disk.raw"
        with atomic_path(final) as tmp:
            with open(tmp, "wb") as fh:
                fh.truncate(layout.total_bytes)
            ns = uuid.UUID(build.root_uuid)
            # every GUID from the recipe's root UUID: the same disk from the same recipe
            script = layout.sfdisk_script(str(uuid.uuid5(ns, "disk")),
                                          {p.name: str(uuid.uuid5(ns, p.name)) for p in layout.partitions})
            runner(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(tmp)], input=script)
            esp = make_esp(ctx, layout.part("esp").bytes, cfg, Firmware.uefi in boot.firmware)
            _write_at(runner, esp, tmp, layout.part("esp").offset)
            _write_at(runner, rootfs, tmp, layout.part("root").offset)
            if Firmware.bios in boot.firmware:
                _install_bios(work, tmp, layout.part("bios"), runner)
        return [Artifact.of("disk", final, ctx.out, format="raw")]


def make_esp(ctx: OutputContext, size: int, cfg: str, uefi: bool) -> Path:
    """A FAT ESP image built with mtools (the build host's kernel may lack vfat)."""
    work, runner, esp_id = ctx.work, ctx.runner, ctx.build.esp_id
    early = work / "early.cfg"
    early.write_text(grub.early_config(esp_id))
    (work / "grub.cfg").write_text(cfg)
    esp = work / "esp.img"
    mtools = mtools_env(ctx.build.epoch)
    runner(["mkfs.fat", "--invariant", "-C", "-i", esp_id.replace("-", ""), "-n", "ESP", str(esp), str(size // 1024)],
           capture=True, env=mtools)
    runner(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT", "::/boot", "::/boot/grub"], env=mtools)
    runner(["mcopy", "-i", str(esp), str(work / "grub.cfg"), "::/boot/grub/grub.cfg"], env=mtools)
    if uefi:
        efi = work / "BOOTX64.EFI"
        runner(grub.mkimage_argv("x86_64-efi", efi, early))
        runner(["mcopy", "-i", str(esp), str(efi), "::/EFI/BOOT/BOOTX64.EFI"], env=mtools)
    return esp


def _install_bios(work: Path, disk: Path, part, runner) -> None:
    core = work / "core.img"
    runner(grub.mkimage_argv("i386-pc", core, work / "early.cfg"))
    boot_img = (grub.GRUB_LIB / "i386-pc" / "boot.img").read_bytes()
    with open(disk, "r+b") as fh:
        mbr = fh.read(SECTOR)
        new_mbr, new_core = grub.patch_bios_boot(mbr, boot_img, core.read_bytes(), part.start, part.size)
        fh.seek(0)
        fh.write(new_mbr)
        fh.seek(part.offset)
        fh.write(new_core)


def _write_at(runner, src: Path, dest: Path, offset: int) -> None:
    if offset % MIB:
        raise BuildError(f"partition offset {offset} is not MiB-aligned")
    copy_into(src, dest, offset)
