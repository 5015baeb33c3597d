"""Boot the hypervisor artifacts as their hypervisor would start them, under QEMU:

- ova: the VMDK the envelope references, on a SATA (AHCI) port with BIOS firmware, which is
  what VirtualBox gives a machine imported from standard OVF sections;
- xen (PVH): the kernel, initrd and command line the xl config names, started by QEMU itself
  as dom0 starts them, the root image as the only disk; (HVM): the partitioned disk with BIOS,
  as Xen's emulated firmware boots it. PV needs Xen's pvgrub2 and is not booted here;
- iso: in a CD drive with BIOS (ISOLINUX) and UEFI (GRUB), and as a stick (a disk: the
  isohybrid MBR); with `toram`, the initrd copies the root into RAM (the kernel started
  directly with the menu's second entry, the ISO still the medium).
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from .. import log, xl
from ..errors import BuildError
from .qemu import LOGIN, BootResult, boot_disk

OVF = "{http://schemas.dmtf.org/ovf/envelope/1}"


def ova_disk(ova: Path, dest_dir: Path) -> Path:
    """Extract the disk the OVA's envelope (its first member) references."""
    with tarfile.open(ova) as tar:
        first = tar.next()
        if first is None or not first.name.endswith(".ovf"):
            raise BuildError(f"{ova}: the first member is not the OVF envelope")
        envelope = ET.fromstring(tar.extractfile(first).read())
        ref = envelope.find(f"{OVF}References/{OVF}File")
        if ref is None:
            raise BuildError(f"{ova}: the envelope references no disk")
        href = ref.get(f"{OVF}href")
        if not href or "/" in href or href.startswith("."):
            raise BuildError(f"{ova}: the envelope references {href!r}, not a member of the archive")
        dest = dest_dir / href
        with tar.extractfile(tar.getmember(href)) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    return dest


def boot_ova(plan, ova: Path) -> BootResult:
    recipe, out = plan.recipe, plan.out_dir
    with tempfile.TemporaryDirectory(prefix="distonet-ova-", dir=_scratch(plan)) as tmp:
        vmdk = ova_disk(ova, Path(tmp))
        return boot_disk(vmdk, "bios", marker=recipe.boot.marker or LOGIN, timeout=recipe.boot.timeout,
                         kernel=out / "vmlinuz", paths=plan.paths, name="ova/bios", log_dir=out / "boot",
                         bus="sata")


def boot_xen(plan, cfg: Path) -> BootResult | None:
    recipe, out = plan.recipe, plan.out_dir
    kind = xl.parse(cfg, strings=("type",))["type"]
    common = dict(marker=recipe.boot.marker or LOGIN, timeout=recipe.boot.timeout, kernel=out / "vmlinuz",
                  paths=plan.paths, log_dir=out / "boot")
    if kind == "hvm":
        return boot_disk(out / "disk.raw", "bios", name="xen/hvm", **common)
    if kind != "pvh":
        log.info(f"boot: {cfg.name} is a {kind.upper()} domain (pvgrub2): only Xen starts it")
        return None
    v = xl.parse(cfg, strings=("kernel", "ramdisk", "cmdline"), lists=("disk",))
    # dom0's copies of the kernel and initrd (the config's comment says where) are the build's
    kernel, initrd = out / Path(v["kernel"]).name, out / Path(v["ramdisk"]).name
    disk = out / _artifact(plan, "rootfs")          # what xen.py gives a PVH domain
    return boot_disk(disk, "bios", name="xen/pvh", direct=(kernel, initrd, v["cmdline"]), **common)


def _artifact(plan, kind: str) -> str:
    from ..manifest import Manifest
    return next(a.path for a in Manifest.load(plan.out_dir).artifacts if a.kind == kind)


def _scratch(plan) -> Path:
    plan.paths.work.mkdir(parents=True, exist_ok=True)
    return plan.paths.work


def boot_iso(plan, iso: Path, firmware: str, how: str = "cdrom") -> BootResult:
    """`how`: cdrom, stick (the ISO as a disk), or toram (CD, the RAM entry's command line)."""
    from ..outputs.iso import IsoOptions, entries, label_of
    recipe, out = plan.recipe, plan.out_dir
    direct = None
    if how == "toram":
        label = label_of(plan.name, plan.output("iso").options if _has(plan, "iso") else IsoOptions())
        ram = next(e for e in entries(plan.name, label, plan.build.cmdline) if e.label == "toram")
        direct = (out / "vmlinuz", out / "initrd.img", ram.cmdline)
    return boot_disk(iso, firmware, marker=recipe.boot.marker or LOGIN, timeout=recipe.boot.timeout,
                     kernel=out / "vmlinuz", paths=plan.paths, name=f"iso-{how}/{firmware}",
                     log_dir=out / "boot", bus="sata" if how == "stick" else "cdrom", direct=direct)


def _has(plan, name: str) -> bool:
    return any(o.name == name for o in plan.outputs)
