"""config: the site side of the diskless modes, rendered from templates/netboot/: an nfs-ganesha
EXPORT (and one for the persistent layers), an exports(5) file for the kernel server, a dnsmasq
DHCP+TFTP configuration with the inventory's machines, and a tgt target with CHAP for the iSCSI
root (mode 0600). Paths and addresses come from the options and the recipe's netboot section (a
site sets them), never from the build host."""

from __future__ import annotations

import os

from pydantic import Field

from .. import chap, netboot
from ..fsutil import atomic_path
from ..manifest import Artifact
from .base import Options, Output, OutputContext

PATH = r"^/[A-Za-z0-9._/{}-]*$"


class ConfigOptions(Options):
    path: str | None = Field(None, pattern=PATH, description="where the server unpacks nfsroot.tar.zst; "
                                                             "default: netboot.export")
    clients: tuple[str, ...] = Field((), description="NFS and iSCSI clients allowed (addresses or networks); "
                                                     "default all")
    tftp_root: str = Field("/srv/tftp/{recipe}", pattern=PATH)
    dhcp_range: str | None = Field(None, pattern=r"^[0-9A-Za-z.,:-]+$",
                                   description="dnsmasq dhcp-range for the nodes (first,last,lease); "
                                               "unset: the line is left for the site to write")
    export_id: int = Field(1, ge=1, le=65534)
    mountd_port: int = Field(20048, ge=1, le=65535)
    lun_path: str = Field("/srv/distonet/{recipe}.img", pattern=PATH,
                          description="iscsi: where the server keeps the LUN (rootfs.img)")


def tgt_nodes(recipe: str, nb, hosts) -> list[dict]:
    """The own targets of the iscsi-persistent hosts: name, initiator, layer file."""
    return [{"hostname": h["hostname"], "target": netboot.node_target_name(nb.iscsi.iqn, recipe, h["hostname"]),
             "initiator": netboot.initiator_name(nb.iscsi.iqn, h["hostname"]),
             "layer": f"{netboot.layer_dir(nb.layers, recipe, h['hostname'])}/layer.ext4"}
            for h in hosts if h["mode"] == "iscsi-persistent"]


def tgt_text(recipe: str, nb, options, hosts, creds, shared: bool = True) -> str:
    """config/tgt/<recipe>.conf: the shared target, then each iscsi-persistent host's own."""
    return netboot.render("tgt.conf.j2", recipe=recipe, shared=shared, iqn=nb.iscsi.iqn, target=netboot.target_name(nb.iscsi.iqn, recipe),
                          lun_path=options.lun_path.format(recipe=recipe), chap=creds,
                          mutual=str(nb.iscsi.chap) == "mutual", clients=list(options.clients),
                          initiators=[netboot.initiator_name(nb.iscsi.iqn, h["hostname"]) for h in hosts
                                      if h["mode"] == "iscsi"], nodes=tgt_nodes(recipe, nb, hosts))


def files_for(modes) -> list[tuple[str, str, str]]:
    """(file, template, format) of each file the modes need."""
    modes = {str(m) for m in modes}
    out = [("config/dnsmasq.conf", "dnsmasq.conf.j2", "dnsmasq")]
    if modes & {"nfs", "nfs-persistent"}:
        out += [("config/ganesha.conf", "ganesha.conf.j2", "nfs-ganesha"), ("config/exports", "exports.j2", "exports")]
    if modes & set(netboot.ISCSI_MODES):
        out += [("config/tgt/{recipe}.conf", "tgt.conf.j2", "tgt")]
    return out


class Config(Output):
    name = "config"
    Options = ConfigOptions
    reads = ("netboot",)
    version = 2

    @classmethod
    def content_digest(cls) -> str:
        return netboot.templates_digest()

    @classmethod
    def files(cls, options) -> list[str]:
        return ["config/dnsmasq.conf", "config/ganesha.conf", "config/exports", "config/tgt/RECIPE.conf"]

    @classmethod
    def make(cls, ctx: OutputContext) -> list[Artifact]:
        recipe, o, nb = ctx.build.recipe, ctx.options, ctx.reads["netboot"]
        site = ctx.build.netboot
        modes = {str(m) for m in nb.modes}
        export = netboot.export_path(nb.export, recipe)
        hosts = site.get("hosts", [])
        creds = chap.read(site["chap"]) if modes & set(netboot.ISCSI_MODES) and site.get("chap") else None
        values = dict(recipe=recipe, export=export, path=(o.path or export).format(recipe=recipe),
                      clients=list(o.clients), export_id=o.export_id, mountd_port=o.mountd_port,
                      tftp_root=o.tftp_root.format(recipe=recipe), dhcp_range=o.dhcp_range, server=nb.server,
                      layers=nb.layers.format(recipe=recipe) if "nfs-persistent" in modes else None, hosts=hosts)
        arts = []
        for rel, template, fmt in files_for(nb.modes):
            rel = rel.format(recipe=recipe)
            (ctx.out / rel).parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(ctx.out / rel) as tmp:
                # written 0600 from the start: the tgt file holds secrets
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if fmt == "tgt" else 0o644)
                with os.fdopen(fd, "w") as f:
                    f.write(tgt_text(recipe, nb, o, hosts, creds) if fmt == "tgt" else netboot.render(template, **values))
            arts.append(Artifact.of("config", ctx.out / rel, ctx.out, format=fmt))
        return arts
