"""iscsi: the iSCSI root's side of the build. The LUN is the LVM-ready rootfs.img itself (every
node reads it, read-only, so it is not copied); this output names it with its target and lists
the initiator names to allow: one per inventory host in iscsi mode, IQN:HOSTNAME, which is also
what a node without an entry calls itself (hooks/initramfs/iscsi)."""

from __future__ import annotations

from .. import netboot
from ..fsutil import atomic_path
from ..manifest import Artifact
from .base import Output, OutputContext


class Iscsi(Output):
    name = "iscsi"
    needs = ("rootfs",)
    reads = ("netboot",)
    version = 1

    @classmethod
    def files(cls, options) -> list[str]:
        return ["iscsi/initiators"]

    @classmethod
    def make(cls, ctx: OutputContext) -> list[Artifact]:
        nb, recipe = ctx.reads["netboot"], ctx.build.recipe
        lun = ctx.input("rootfs", "rootfs")
        hosts = [h for h in ctx.build.netboot.get("hosts", []) if h["mode"] in netboot.ISCSI_MODES]
        lines = [f"# iSCSI root of {recipe}: made by distonet (outputs/iscsi.py)",
                 f"# target {netboot.target_name(nb.iscsi.iqn, recipe)}, CHAP {nb.iscsi.chap}",
                 f"# LUN: {lun.name} ({lun.stat().st_size} bytes, root filesystem UUID {ctx.build.root_uuid}),"
                 " exported read-only (config/tgt/)",
                 "# initiator names, one per line (a node without an inventory entry logs in as IQN:HOSTNAME):"]
        lines += [f"{netboot.initiator_name(nb.iscsi.iqn, h['hostname'])}  # {h['hostname']} {h['mac']}"
                  + (f", own target {netboot.node_target_name(nb.iscsi.iqn, recipe, h['hostname'])}"
                     if h["mode"] == "iscsi-persistent" else "") for h in hosts]
        (ctx.out / "iscsi").mkdir(parents=True, exist_ok=True)
        with atomic_path(ctx.out / "iscsi/initiators") as tmp:
            tmp.write_text("\n".join(lines) + "\n")
        return [Artifact.of("iscsi", ctx.out / "iscsi/initiators", ctx.out, format="iscsi-initiators")]
