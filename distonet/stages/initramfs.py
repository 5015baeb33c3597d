"""initramfs: hook sets from hooks/initramfs/<name>/ (initramfs-tools' own layout: hooks/,
scripts/<phase>/, conf.d/) installed into the image's /etc/initramfs-tools, then the initrd
rebuilt by the image's update-initramfs. Keyed on the sets' content, so editing a hook rebuilds
the initrd and nothing before it. A recipe with netboot modes gets the `netroot` and `union` sets, with iscsi also `iscsi`;
one with an ISO `live` and `union`."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import BuildError
from ..host.chroot import chroot_argv, chroot_session
from ..reproducible import epoch_env
from .base import StageContext, StageKind

UNION = "union"      # the read-only root under a writable layer
NETROOT = "netroot"  # the root's interface left as the initramfs set it
ISCSI = "iscsi"      # the iSCSI portal and initiator name when the command line leaves them out
LIVE = "live"        # the root a squashfs file on a medium (the ISO) or in RAM


def hook_files(d: Path) -> list[dict]:
    """Every file of a hook set (links followed: a script may serve two phases), with its digest."""
    out = []
    for f in sorted(p for p in d.rglob("*") if p.is_file()):
        out.append({"path": f.relative_to(d).as_posix(), "sha256": hashlib.sha256(f.read_bytes()).hexdigest()})
    return out


class Initramfs(StageKind):
    kind = "initramfs"
    doc = "initramfs-tools hooks installed, the initrd rebuilt"
    order = 95
    version = 2     # 2: SOURCE_DATE_EPOCH (a reproducible initrd)

    @classmethod
    def instances(cls, recipe, facts):
        if facts.initramfs:
            yield "initramfs", {"sets": [{"name": s["name"], "files": list(s["files"])} for s in facts.initramfs]}

    @classmethod
    def make(cls, ctx: StageContext) -> dict:
        merged = ctx.mount_for_writing()
        conf = merged / "etc/initramfs-tools"
        if not (merged / "usr/sbin/update-initramfs").exists():
            raise BuildError("the image has no initramfs-tools", hint="keep initramfs-tools in kernel.initramfs")
        written = []
        for s in ctx.inputs["sets"]:
            src = Path(ctx.host.sources[f"initramfs:{s['name']}"])
            for f in s["files"]:
                data = (src / f["path"]).read_bytes()
                if hashlib.sha256(data).hexdigest() != f["sha256"]:
                    raise BuildError(f"{src / f['path']} changed since the build was planned", hint="run the build again")
                dest = conf / f["path"]
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
                dest.chmod(0o755 if not f["path"].startswith("conf.d/") else 0o644)
                written.append(f"{s['name']}/{f['path']}")
        with chroot_session(ctx.ledger, merged):
            ctx.runner(chroot_argv(merged, ["update-initramfs", "-u", "-k", "all"], epoch_env(ctx.host.epoch)))
        return {"files": written}
