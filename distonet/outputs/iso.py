"""iso: a hybrid live ISO (<recipe>.iso) for a CD or a stick, built with pycdlib.

- BIOS: ISOLINUX by El Torito, and an isohybrid MBR so the same file boots from a stick;
- UEFI: a second El Torito entry, a FAT image holding GRUB's EFI image (grub-mkimage, mtools),
  which finds the ISO by its label and reads /boot/grub/grub.cfg;
- the root: the squashfs output's file as /live/root.squashfs, mounted by the initrd
  (hooks/initramfs/live, boot=distonet-live) under a tmpfs layer (hooks/initramfs/union); the
  menu's second entry copies it into RAM first.
Files are taken from the outputs the ISO needs (their artifacts), never by name."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Optional

from pydantic import Field

from .. import grub, templates
from ..errors import BuildError
from ..fsutil import atomic_path
from ..manifest import Artifact
from ..netboot import Entry, serial_of
from .base import Options, Output, OutputContext
from .disk import mtools_env

ISOLINUX = Path("/usr/lib/ISOLINUX/isolinux.bin")
LDLINUX = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
EFI_IMG_KIB = 4096


class IsoOptions(Options):
    label: Optional[str] = Field(None, pattern=r"^[A-Z0-9_]{1,32}$",
                                 description="the ISO's volume label (the initrd finds its medium by it); "
                                             "default: the recipe's name in capitals")
    timeout: int = Field(3, ge=0, le=600, description="seconds the boot menus wait")


def label_of(recipe: str, o: IsoOptions) -> str:
    return o.label or re.sub(r"[^A-Z0-9_]", "_", recipe.upper())[:32]


def entries(recipe: str, label: str, cmdline: tuple[str, ...]) -> list[Entry]:
    """The live entry and the same copied into RAM; the image's own arguments (its console)
    without its disk root."""
    own = [a for a in cmdline if not a.startswith("root=") and a != "ro"]
    live = ["boot=distonet-live", f"distonet.live={label}", "distonet.union=tmpfs", "ro", *own]
    return [Entry("live", f"{recipe} (live)", " ".join(live), ()),
            Entry("toram", f"{recipe} (live, copied to RAM)", " ".join(live + ["distonet.toram"]), ())]


def efi_image(ctx: OutputContext, label: str) -> Path:
    """A FAT image with GRUB's EFI binary at the removable-media path, for El Torito's EFI entry."""
    work, runner = ctx.work, ctx.runner
    early = work / "iso-early.cfg"
    early.write_text(f"search --no-floppy --label --set=root {label}\nset prefix=($root)/boot/grub\n")
    efi = work / "BOOTX64.EFI"
    runner(grub.mkimage_argv("x86_64-efi", efi, early, extra=("iso9660", "search_label")))
    img = work / "efiboot.img"
    mtools = mtools_env(ctx.build.epoch)
    runner(["mkfs.fat", "--invariant", "-C", "-n", "EFIBOOT", str(img), str(EFI_IMG_KIB)], capture=True, env=mtools)
    runner(["mmd", "-i", str(img), "::/EFI", "::/EFI/BOOT"], env=mtools)
    runner(["mcopy", "-i", str(img), str(efi), "::/EFI/BOOT/BOOTX64.EFI"], env=mtools)
    return img


@contextlib.contextmanager
def pycdlib_pinned(epoch: int, seed: str):
    """pycdlib dates every volume descriptor and directory record with time.time() in local
    time, and gives the hybrid image's MBR and GPT random ids (random, uuid4), with no way to
    set them: while the ISO is made its modules see a clock stopped at the build's epoch, in
    UTC, and ids drawn from `seed` (the recipe's), so the same image gives the same bytes."""
    import itertools
    import random
    import types
    import uuid
    import pycdlib.dates
    import pycdlib.headervd
    import pycdlib.isohybrid
    import pycdlib.pycdlib
    count = itertools.count()
    ns = uuid.uuid5(uuid.NAMESPACE_URL, f"distonet:iso:{seed}")
    stopped = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("_")})
    stopped.time = lambda: float(epoch)
    stopped.localtime = time.gmtime
    ids = types.SimpleNamespace(UUID=uuid.UUID, uuid4=lambda: uuid.uuid5(ns, str(next(count))))
    rng = random.Random(str(ns))
    patches = [(m, "time", stopped) for m in (pycdlib.dates, pycdlib.headervd, pycdlib.pycdlib)] if epoch else []
    patches += [(pycdlib.isohybrid, "uuid", ids), (pycdlib.isohybrid, "random", rng)]
    saved = [(m, name, getattr(m, name)) for m, name, _ in patches]
    try:
        for m, name, value in patches:
            setattr(m, name, value)
        yield
    finally:
        for m, name, value in saved:
            setattr(m, name, value)


def write_iso(dest: Path, label: str, files: dict[str, Path | bytes]) -> None:
    """`files`: ISO path (lower case, as Rock Ridge and Joliet show it) -> content."""
    import io
    import pycdlib
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=label, sys_ident="LINUX", app_ident_str="distonet",
            rock_ridge="1.09", joliet=3)
    dirs: set[str] = set()
    handles = []
    for path in sorted(files):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            d = "/" + "/".join(parts[:i])
            if d not in dirs:
                iso.add_directory(d.upper(), rr_name=parts[i - 1], joliet_path=d)
                dirs.add(d)
        data = files[path]
        iso_path = _iso_name(path)
        if isinstance(data, bytes):
            iso.add_fp(io.BytesIO(data), len(data), iso_path, rr_name=parts[-1], joliet_path=path)
        else:
            fh = open(data, "rb")
            handles.append(fh)
            iso.add_fp(fh, data.stat().st_size, iso_path, rr_name=parts[-1], joliet_path=path)
    try:
        iso.add_eltorito(_iso_name("/isolinux/isolinux.bin"), bootcatfile=_iso_name("/isolinux/boot.cat"),
                         rr_bootcatname="boot.cat", joliet_bootcatfile="/isolinux/boot.cat",
                         boot_load_size=4, boot_info_table=True)
        iso.add_eltorito(_iso_name("/efi/efiboot.img"), efi=True)
        iso.add_isohybrid(efi=True)
        iso.write(str(dest))
    finally:
        iso.close()
        for fh in handles:
            fh.close()


def _iso_name(path: str) -> str:
    """ISO 9660 level 3 names: upper case, 8.3 with a version; Rock Ridge keeps the real ones."""
    *dirs, name = path.strip("/").split("/")
    stem, _, ext = name.partition(".")
    clean = lambda s, n: re.sub(r"[^A-Z0-9_]", "_", s.upper())[:n]  # noqa: E731
    return "/" + "/".join([*(d.upper() for d in dirs), f"{clean(stem, 8)}.{clean(ext, 3)};1"])


class Iso(Output):
    name = "iso"
    Options = IsoOptions
    needs = ("squashfs", "kernel")
    reads = ("boot",)
    tools = ("grub-mkimage", "mkfs.fat", "mmd", "mcopy")
    version = 2     # 2: reproducible (pycdlib_pinned, the EFI image's dates)

    @classmethod
    def content_digest(cls) -> str:
        return templates.digest("iso")

    @classmethod
    def files(cls, options) -> list[str]:
        return ["RECIPE.iso"]

    @classmethod
    def make(cls, ctx: OutputContext) -> list[Artifact]:
        for f in (ISOLINUX, LDLINUX):
            if not f.is_file():
                raise BuildError(f"{f}: not found", hint="apt install isolinux syslinux-common (./setup.sh does)")
        recipe, o = ctx.build.recipe, ctx.options
        label = label_of(recipe, o)
        menu = dict(recipe=recipe, entries=entries(recipe, label, ctx.build.cmdline),
                    serial=serial_of(ctx.reads["boot"].console), timeout=o.timeout)
        files: dict[str, Path | bytes] = {
            "/isolinux/isolinux.bin": ISOLINUX.read_bytes(),   # patched by El Torito's boot info table
            "/isolinux/ldlinux.c32": LDLINUX,
            "/isolinux/isolinux.cfg": templates.render("iso/isolinux.cfg.j2", **menu).encode(),
            "/boot/grub/grub.cfg": templates.render("iso/grub.cfg.j2", **menu).encode(),
            "/efi/efiboot.img": efi_image(ctx, label),
            "/live/vmlinuz": ctx.input("kernel", "kernel"),
            "/live/initrd.img": ctx.input("kernel", "initrd"),
            "/live/root.squashfs": ctx.input("squashfs", "squashfs"),
        }
        final = ctx.out / f"{recipe}.iso"
        with atomic_path(final) as tmp:
            with pycdlib_pinned(ctx.build.epoch, ctx.build.root_uuid):
                write_iso(tmp, label, files)
        return [Artifact.of("iso", final, ctx.out, format="iso9660+hybrid")]
