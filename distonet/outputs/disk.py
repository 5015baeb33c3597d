"""disk.raw: a GPT disk that boots with BIOS and UEFI. BIOS boot partition (GRUB core.img),
an ESP built with mtools (no vfat needed in the build host's kernel), and rootfs.img as the
root partition. Everything is written at offsets into one file: no loop device, no mount."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from pydantic import Field

from .. import grub
from ..layout import MIB, SECTOR, disk_layout
from ..manifest import Artifact
from ..recipe import Firmware
from . import Options, Output
from .kernel import find_kernel

MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1"}


class DiskOptions(Options):
    esp_mib: int = Field(32, ge=32, description="size of the EFI system partition")


class Disk(Output):
    name = "disk"
    Options = DiskOptions
    needs = ("rootfs",)
    reads = ("boot",)

    def files(self) -> list[str]:
        return ["disk.raw"]

    def make(self, tree: Path, ledger, runner) -> list[Artifact]:
        plan, recipe = self.plan, self.plan.recipe
        out = plan.out_dir
        work = plan.paths.work / f"disk-{recipe.name}-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            rootfs = out / "rootfs.img"
            layout = disk_layout(rootfs.stat().st_size, self.options.esp_mib)
            version = find_kernel(tree)[0]
            cfg = grub.grub_cfg(f"{recipe.name} ({version})", version, plan.root_uuid,
                                list(recipe.boot.cmdline), recipe.boot.console)
            tmp = out / ".disk.raw.tmp"
            tmp.unlink(missing_ok=True)
            with open(tmp, "wb") as fh:
                fh.truncate(layout.total_bytes)
            ns = uuid.UUID(plan.root_uuid)
            script = layout.sfdisk_script(str(uuid.uuid5(ns, "disk")),
                                          {"root": str(uuid.uuid5(ns, "root")), "esp": str(uuid.uuid5(ns, "esp"))})
            runner(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(tmp)], input=script)
            esp = self._make_esp(work, layout.part("esp").bytes, cfg, runner)
            _write_at(runner, esp, tmp, layout.part("esp").offset)
            _write_at(runner, rootfs, tmp, layout.part("root").offset)
            if Firmware.bios in recipe.boot.firmware:
                self._install_bios(work, tmp, layout.part("bios"), runner)
            os.replace(tmp, out / "disk.raw")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return [Artifact.of("disk", out / "disk.raw", out)]

    def _make_esp(self, work: Path, size: int, cfg: str, runner) -> Path:
        early = work / "early.cfg"
        early.write_text(grub.early_config(self.plan.esp_id))
        (work / "grub.cfg").write_text(cfg)
        esp = work / "esp.img"
        runner(["mkfs.fat", "-C", "-i", self.plan.esp_id.replace("-", ""), "-n", "ESP",
                str(esp), str(size // 1024)], capture=True)
        runner(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT", "::/boot", "::/boot/grub"], env=MTOOLS_ENV)
        runner(["mcopy", "-i", str(esp), str(work / "grub.cfg"), "::/boot/grub/grub.cfg"], env=MTOOLS_ENV)
        if Firmware.uefi in self.plan.recipe.boot.firmware:
            efi = work / "BOOTX64.EFI"
            runner(grub.mkimage_argv("x86_64-efi", efi, early))
            runner(["mcopy", "-i", str(esp), str(efi), "::/EFI/BOOT/BOOTX64.EFI"], env=MTOOLS_ENV)
        return esp

    def _install_bios(self, work: Path, disk: Path, part, runner) -> None:
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
    assert offset % MIB == 0, "partitions are MiB-aligned"
    runner(["dd", f"if={src}", f"of={dest}", "bs=1M", f"seek={offset // MIB}",
            "conv=notrunc,sparse", "status=none"])
