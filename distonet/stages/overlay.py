"""overlay.<name>: a site overlay (render.py) written onto the tree, in its own upper dir.

Keyed by the overlay's content digest (files, modes, link targets, metadata) and the values of
exactly the variables its templates read, so changing one template re-runs this overlay and what
follows, and nothing before it. The overlay's directory reaches the stage as a host fact (its
place does not change the image); the stage checks that what it reads still has the digest of
its key.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .. import render
from ..errors import BuildError
from ..imagefs import ids, link_target_ok, resolve_in
from ..tree import find_kernel
from .base import StageContext, StageKind


class Overlay(StageKind):
    kind = "overlay"
    doc = "a site overlay"
    order = 50
    version = 1

    @classmethod
    def instances(cls, recipe, facts):
        for name in recipe.overlays:
            o = facts.overlays[name]
            yield f"overlay.{name}", {"name": name, "digest": o["digest"], "vars": o["vars"]}

    @classmethod
    def make(cls, ctx: StageContext) -> dict:
        name = ctx.inputs["name"]
        src = Path(ctx.host.sources[f"overlay:{name}"])
        meta_file = src.with_name(f"{name}.meta.yaml")
        meta = render.load_meta(meta_file)
        entries = render.scan(src, meta_file)
        if render.tree_digest(entries, meta) != ctx.inputs["digest"]:
            raise BuildError(f"overlay {name} ({src}) changed since the build was planned",
                             hint="run the build again")
        merged = ctx.mount_for_writing()
        variables = dict(ctx.inputs["vars"])
        variables[render.FACTS] = {**variables.get(render.FACTS, {}), "kernel_version": _kernel(merged)}
        written = []
        for item in render.render(src, entries, meta, variables):
            written.append(write_entry(merged, item, name))
        return {"files": written}


def _kernel(tree: Path) -> str | None:
    try:
        return find_kernel(tree)[0]
    except BuildError:
        return None


def write_entry(root: Path, item: "render.Rendered", overlay: str) -> dict:
    """Write one rendered entry inside `root`, refusing every way out of it."""
    where = f"overlay {overlay}: {item.source}"
    parent = resolve_in(root, os.path.dirname(item.path)) if "/" in item.path else Path(root)
    target = parent / os.path.basename(item.path)
    try:
        uid, gid = ids(root, item.owner, "passwd"), ids(root, item.group, "group")
    except BuildError as exc:
        raise BuildError(f"{where}: {exc}", hint=exc.hint) from None
    if item.kind == "dir":
        if target.is_symlink():
            target = resolve_in(root, item.path, follow_last=True)  # lib → usr/lib on merged-/usr images
        target.mkdir(parents=True, exist_ok=True)
        os.chown(target, uid, gid)
        os.chmod(target, item.mode)
        return {"path": item.path, "kind": "dir", "source": item.source, "mode": f"{item.mode:04o}",
                "owner": item.owner, "group": item.group}
    if item.kind == "symlink":
        link = item.data.decode()
        if not link_target_ok(item.path, link):
            raise BuildError(f"{where}: the link → {link} leads outside the image",
                             hint="point it inside the image (an absolute path is the image's own)")
        if target.is_symlink() or target.exists():
            if target.is_dir() and not target.is_symlink():
                raise BuildError(f"{where}: {item.path} is a directory in the image; a link cannot replace it")
            target.unlink()
        os.symlink(link, target)
        os.lchown(target, uid, gid)
        return {"path": item.path, "kind": "symlink", "source": item.source, "target": link}
    if target.is_symlink():
        raise BuildError(f"{where}: {item.path} is a symbolic link in the image; writing through it is refused",
                         hint="remove the link in a hook first, or write to the path it names")
    tmp = target.with_name(f".{target.name}.distonet-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, item.data)
        os.fchown(fd, uid, gid)
        os.fchmod(fd, item.mode)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    return {"path": item.path, "kind": "file", "source": item.source, "mode": f"{item.mode:04o}",
            "owner": item.owner, "group": item.group, "sha256": hashlib.sha256(item.data).hexdigest()}
