"""ova and netboot-ova: VirtualBox appliances (OVF 1.0 in a tar).

- ova: the disk as a streamOptimized VMDK (what OVF consumers expect: compressed, sequential),
  an envelope rendered from templates/ova/envelope.ovf.j2 with VirtualBox's conventions
  (VirtualSystemType virtualbox-2.2, an AHCI controller, an E1000 NIC), and a manifest of
  digests. The envelope has no <vbox:Machine> section: VirtualBox builds the machine from the
  standard sections, and a Machine section whose disk attachments do not match the
  DiskSection is what made VirtualBox refuse kiwi's OVA (OSInside/kiwi#1417).
- netboot-ova: no disk, a bridged NIC that boots first (a short <vbox:Machine>: OVF itself
  cannot order boot devices), a few KB: a laptop runs the site's image from its PXE service.

The tar holds the envelope first, then the manifest, then the disk (DSP0243's order), in
ustar format with fixed owners and times."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import uuid as uuidlib
from pathlib import Path
from typing import Literal

from pydantic import Field

from .. import templates
from ..errors import BuildError
from ..fsutil import atomic_path
from ..manifest import Artifact
from .base import Options, Output, OutputContext

VMDK_STREAM = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
# VirtualBox's guest OS types and the CIM OperatingSystem ids it writes for them
OS_TYPES = {"Debian_64": 96, "Debian": 95, "Linux26_64": 101, "Ubuntu_64": 94}


class OvaOptions(Options):
    memory_mib: int = Field(2048, ge=128, le=4 << 20)
    vcpus: int = Field(2, ge=1, le=64)
    os_type: Literal[tuple(OS_TYPES)] = Field("Debian_64", description="VirtualBox's guest OS type")  # type: ignore[valid-type]
    network: Literal["NAT", "Bridged"] = Field("NAT", description="how the NIC reaches the network")
    digest: Literal["sha1", "sha256"] = Field("sha1", description="the manifest's digests: SHA1 is what OVF 1.0 "
                                                                  "consumers check; VirtualBox 5.1+ also reads SHA256")


class NetbootOvaOptions(OvaOptions):
    network: Literal["Bridged"] = Field("Bridged", description="the NIC is bridged to the site's network")
    memory_mib: int = Field(2048, ge=256, le=4 << 20)


def envelope(name: str, description: str, o: OvaOptions, disk: dict | None) -> str:
    return templates.render("ova/envelope.ovf.j2", name=name, description=description, disk=disk,
                            network=o.network, os_type=o.os_type, os_id=OS_TYPES[o.os_type],
                            memory_mib=o.memory_mib, vcpus=o.vcpus,
                            uuid=uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"distonet:{name}"))


def manifest(files: dict[str, Path | bytes], algorithm: str) -> str:
    """`SHA1(name)= hex` per file, as OVF's .mf has it."""
    lines = []
    for name, data in files.items():
        h = hashlib.new(algorithm)
        if isinstance(data, bytes):
            h.update(data)
        else:
            with open(data, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        lines.append(f"{algorithm.upper()}({name})= {h.hexdigest()}\n")
    return "".join(lines)


def write_ova(dest: Path, members: list[tuple[str, Path | bytes]]) -> None:
    with tarfile.open(dest, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mode, info.uname, info.gname, info.mtime = 0o644, "someone", "someone", 0
            if isinstance(data, bytes):
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.size = data.stat().st_size
                with open(data, "rb") as fh:
                    tar.addfile(info, fh)


def vmdk_argv(raw: Path, vmdk: Path) -> list[str]:
    return ["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized",
            str(raw), str(vmdk)]


def set_vmdk_cid(vmdk: Path, cid: str) -> None:
    """qemu-img gives each new VMDK a random content id (`CID=%x` in the embedded descriptor,
    so of varying length): one derived from the recipe instead, the descriptor written again in
    its fixed-size area, so that the same disk gives the same bytes."""
    import struct
    with open(vmdk, "r+b") as fh:
        header = fh.read(512)
        if header[:4] != b"KDMV":
            raise BuildError(f"{vmdk}: not a sparse VMDK")
        offset, size = struct.unpack_from("<QQ", header, 28)
        fh.seek(offset * 512)
        area = fh.read(size * 512)
        text, n = re.subn(rb"\nCID=[0-9a-fA-F]+\n", f"\nCID={cid}\n".encode(), area.rstrip(b"\0"), count=1)
        if n != 1 or len(text) > len(area):
            raise BuildError(f"{vmdk}: no content id in its descriptor where qemu-img writes it")
        fh.seek(offset * 512)
        fh.write(text.ljust(len(area), b"\0"))


class Ova(Output):
    name = "ova"
    Options = OvaOptions
    needs = ("disk",)
    reads = ("description",)
    tools = ("qemu-img",)
    version = 2     # 2: the VMDK's content id from the recipe
    @classmethod
    def content_digest(cls) -> str:
        return templates.digest("ova")

    @classmethod
    def files(cls, options) -> list[str]:
        return ["RECIPE.ova"]

    @classmethod
    def make(cls, ctx: OutputContext) -> list[Artifact]:
        o, name = ctx.options, ctx.build.recipe
        raw = ctx.input("disk", "disk")
        vmdk = ctx.work / f"{name}-disk1.vmdk"
        ctx.runner(vmdk_argv(raw, vmdk))
        set_vmdk_cid(vmdk, uuidlib.uuid5(uuidlib.UUID(ctx.build.root_uuid), "vmdk").hex[:8])
        disk = {"href": vmdk.name, "size": vmdk.stat().st_size, "capacity": raw.stat().st_size}
        ovf = envelope(name, ctx.reads["description"], o, disk).encode()
        mf = manifest({f"{name}.ovf": ovf, vmdk.name: vmdk}, o.digest).encode()
        final = ctx.out / f"{name}.ova"
        with atomic_path(final) as tmp:
            write_ova(tmp, [(f"{name}.ovf", ovf), (f"{name}.mf", mf), (vmdk.name, vmdk)])
        return [Artifact.of("ova", final, ctx.out, format="ova+ovf-1.0", virtual_size=disk["capacity"])]


class NetbootOva(Output):
    name = "netboot-ova"
    Options = NetbootOvaOptions
    reads = ("description",)

    @classmethod
    def content_digest(cls) -> str:
        return templates.digest("ova")

    @classmethod
    def files(cls, options) -> list[str]:
        return ["RECIPE-netboot.ova"]

    @classmethod
    def make(cls, ctx: OutputContext) -> list[Artifact]:
        o, name = ctx.options, f"{ctx.build.recipe}-netboot"
        ovf = envelope(name, f"{ctx.reads['description']} (booted from the site's PXE service)", o, None).encode()
        mf = manifest({f"{name}.ovf": ovf}, o.digest).encode()
        final = ctx.out / f"{name}.ova"
        with atomic_path(final) as tmp:
            write_ova(tmp, [(f"{name}.ovf", ovf), (f"{name}.mf", mf)])
        return [Artifact.of("netboot-ova", final, ctx.out, format="ova+ovf-1.0")]
