"""Writing into an image's tree from the host without ever leaving it: symlinks inside the
image are resolved against the image's root (as the image will see them), and a path that
would lead outside is refused. Owners are the image's own users and groups."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from .errors import BuildError

MAX_LINKS = 40


def resolve_in(root: Path, rel: str, follow_last: bool = False) -> Path:
    """The host path of image path `rel`, following the image's symlinks as the image would
    (absolute targets from the image root); refuses any step outside the root."""
    root = Path(root)
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if not done:  # (the image itself would stay at /; a write from the host would not)
                raise BuildError(f"{rel}: a link in the image leads above its root; refused")
            done.pop()
            continue
        candidate = root.joinpath(*done, part)
        if candidate.is_symlink() and (parts or follow_last):  # follow it inside the image
            hops += 1
            if hops > MAX_LINKS:
                raise BuildError(f"{rel}: too many symbolic links in the image")
            target = os.readlink(candidate)
            base = [] if target.startswith("/") else done  # absolute targets: the image's root
            parts = [*base, *target.lstrip("/").split("/"), *parts]
            done = []
            continue
        done.append(part)
    return root.joinpath(*done)


def link_target_ok(rel: str, target: str) -> bool:
    """A link at image path `rel` pointing at `target` stays inside the image (absolute targets
    are the image's own paths)."""
    if target.startswith("/"):
        return True
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    return not (joined == ".." or joined.startswith("../"))


def entries(root: Path, table: str) -> dict[str, list[str]]:
    """The image's /etc/passwd or /etc/group as {name: fields}."""
    try:
        lines = (Path(root) / "etc" / table).read_text().splitlines()
    except OSError:
        return {}
    return {f[0]: f for f in (line.split(":") for line in lines) if len(f) > 3}


def ids(root: Path, name: str, table: str, field: int = 2) -> int:
    """uid or gid of `name` in the image's /etc/passwd or /etc/group (numbers pass through);
    field=3 of passwd gives the user's primary group."""
    if name.isdigit():
        return int(name)
    found = entries(root, table).get(name)
    if found:
        return int(found[field])
    what = "user" if table == "passwd" else "group"
    raise BuildError(f"no {what} '{name}' in the image's /etc/{table}",
                     hint=f"create the {what} in a layer or hook before this overlay, or use a number")
