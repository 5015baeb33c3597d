"""libvirt: a KVM domain (libvirt.xml) for the qcow2 disk — UEFI or BIOS, virtio disk and
network, a serial console — rendered from templates/libvirt/domain.xml.j2 and checked against
libvirt's own schema (virt-xml-validate) before it appears."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from .. import templates
from ..errors import BuildError, CommandError
from ..fsutil import atomic_path
from ..manifest import Artifact
from .base import Options, Output, OutputContext


class LibvirtOptions(Options):
    memory_mib: int = Field(2048, ge=128, le=4 << 20)
    vcpus: int = Field(2, ge=1, le=512)
    firmware: Optional[Literal["bios", "uefi"]] = Field(
        None, description="default: uefi if the recipe's boot.firmware has it, else bios")
    disk_path: str = Field("/var/lib/libvirt/images/{recipe}.qcow2", pattern=r"^/[A-Za-z0-9._/{}-]*$",
                           description="where the hypervisor host keeps disk.qcow2")
    network: str = Field("default", pattern=r"^[A-Za-z0-9._-]{1,64}$", description="a libvirt network")
    bridge: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9._-]{1,15}$",
                                  description="a host bridge instead of a libvirt network")


def domain_xml(recipe: str, description: str, o: LibvirtOptions, firmware: str) -> str:
    return templates.render("libvirt/domain.xml.j2", recipe=recipe, name=recipe, description=description,
                            memory_mib=o.memory_mib, vcpus=o.vcpus, firmware=firmware,
                            disk_path=o.disk_path.format(recipe=recipe), network=o.network, bridge=o.bridge)


class Libvirt(Output):
    name = "libvirt"
    Options = LibvirtOptions
    needs = ("qcow2",)
    reads = ("boot", "description")
    tools = ("virt-xml-validate",)

    @classmethod
    def content_digest(cls) -> str:
        return templates.digest("libvirt")

    @classmethod
    def files(cls, options) -> list[str]:
        return ["libvirt.xml"]

    @classmethod
    def make(cls, ctx: OutputContext) -> list[Artifact]:
        o = ctx.options
        firmware = o.firmware or ("uefi" if "uefi" in [str(f) for f in ctx.reads["boot"].firmware] else "bios")
        final = ctx.out / "libvirt.xml"
        with atomic_path(final) as tmp:
            tmp.write_text(domain_xml(ctx.build.recipe, ctx.reads["description"], o, firmware))
            try:
                ctx.runner(["virt-xml-validate", str(tmp), "domain"], capture=True)
            except CommandError as exc:
                raise BuildError(f"libvirt.xml does not pass libvirt's schema: {exc}") from None
        return [Artifact.of("libvirt", final, ctx.out, format="libvirt-domain")]
