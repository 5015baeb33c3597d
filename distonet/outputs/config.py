"""config: the site side of the diskless modes, rendered from templates/netboot/: an nfs-ganesha
EXPORT, an exports(5) line for the kernel server and a dnsmasq DHCP+TFTP configuration. Paths and
addresses come from the options (a site sets them), never from the build host."""

from __future__ import annotations

from pydantic import Field

from .. import netboot
from ..fsutil import atomic_path
from ..manifest import Artifact
from .base import Options, Output, OutputContext


class ConfigOptions(Options):
    path: str | None = Field(None, pattern=r"^/[A-Za-z0-9._/{}-]*$",
                             description="where the server unpacks nfsroot.tar.zst; default: netboot.export")
    clients: tuple[str, ...] = Field((), description="NFS clients allowed (addresses or networks); default all")
    tftp_root: str = Field("/srv/tftp/{recipe}", pattern=r"^/[A-Za-z0-9._/{}-]*$")
    dhcp_range: str | None = Field(None, pattern=r"^[0-9A-Za-z.,:-]+$",
                                   description="dnsmasq dhcp-range for the nodes (first,last,lease); "
                                               "unset: the line is left for the site to write")
    export_id: int = Field(1, ge=1, le=65535)
    mountd_port: int = Field(20048, ge=1, le=65535)


class Config(Output):
    name = "config"
    Options = ConfigOptions
    reads = ("netboot",)
    version = 1
    FILES = ("config/ganesha.conf", "config/exports", "config/dnsmasq.conf")

    @classmethod
    def content_digest(cls) -> str:
        return netboot.templates_digest()

    @classmethod
    def files(cls, options) -> list[str]:
        return list(cls.FILES)

    @classmethod
    def make(cls, ctx: OutputContext) -> list[Artifact]:
        recipe, o = ctx.build.recipe, ctx.options
        export = netboot.export_path(ctx.reads["netboot"].export, recipe)
        path = (o.path or export).format(recipe=recipe)
        values = dict(recipe=recipe, export=export, path=path, clients=list(o.clients), export_id=o.export_id,
                      mountd_port=o.mountd_port, tftp_root=o.tftp_root.format(recipe=recipe),
                      dhcp_range=o.dhcp_range, server=ctx.reads["netboot"].server)
        (ctx.out / "config").mkdir(parents=True, exist_ok=True)
        arts = []
        for rel, template, fmt in (("config/ganesha.conf", "ganesha.conf.j2", "nfs-ganesha"),
                                   ("config/exports", "exports.j2", "exports"),
                                   ("config/dnsmasq.conf", "dnsmasq.conf.j2", "dnsmasq")):
            with atomic_path(ctx.out / rel) as tmp:
                tmp.write_text(netboot.render(template, **values))
            arts.append(Artifact.of("config", ctx.out / rel, ctx.out, format=fmt))
        return arts
