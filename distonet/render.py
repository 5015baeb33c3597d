"""Site overlays, purely: an overlay directory and variables → the entries to write into an
image (path, kind, bytes or link target, mode, owner, group). Templates (`*.j2`) are rendered
by Jinja2's sandbox with StrictUndefined; nothing here writes to an image (stages/overlay.py
does, refusing any write that would leave the image's root).

An overlay is `overlays/<name>/`, a tree copied onto the image root. Its optional metadata,
`overlays/<name>.meta.yaml`, gives owners, groups and modes (git keeps neither) and allows what
is refused by default (setuid and setgid bits).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import RecipeError

TEMPLATE_SUFFIX = ".j2"
FACTS = "distonet"   # build facts are under this name: {{ distonet.recipe }}, {{ distonet.kernel_version }}
_MODE = re.compile(r"^0?[0-7]{3,4}$")


class FileMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    owner: Optional[str] = Field(None, pattern=r"^[a-z_][a-z0-9_-]*\$?$|^[0-9]+$")
    group: Optional[str] = Field(None, pattern=r"^[a-z_][a-z0-9_-]*\$?$|^[0-9]+$")
    mode: Optional[str] = Field(None, pattern=_MODE.pattern, description="octal, as a string: '0640'")
    setuid: bool = Field(False, description="allow a setuid or setgid mode on this path")


class OverlayMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    defaults: FileMeta = FileMeta()
    files: dict[str, FileMeta] = Field(default_factory=dict, description="paths relative to the overlay")


@dataclass(frozen=True)
class Entry:
    """One path of an overlay's source tree."""
    path: str                 # relative, with '/' separators
    kind: str                 # dir, file, template, symlink
    mode: int                 # permission bits as found
    digest: str               # content sha256 (file, template), link target (symlink), "" (dir)


@dataclass(frozen=True)
class Rendered:
    """One path to write into the image."""
    path: str                 # relative to the image root (a template without its .j2)
    kind: str                 # dir, file, symlink
    data: bytes               # file content, or the link target
    mode: int
    owner: str                # a name or a number, looked up in the image
    group: str
    source: str               # overlay-relative source path


# An overlay file is read whole into memory: larger ones belong in a package or a hook.
MAX_FILE_BYTES = 512 << 20

def load_meta(meta_file: Path) -> OverlayMeta:
    if not meta_file.is_file():
        return OverlayMeta()
    try:
        data = yaml.safe_load(meta_file.read_text()) or {}
        return OverlayMeta.model_validate(data)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{meta_file}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise RecipeError(f"{meta_file}: {key}: {err['msg'].lower()}") from None


def scan(root: Path, meta_file: Path | None = None) -> list[Entry]:
    """The overlay's entries, sorted. Device nodes, fifos and sockets are refused; so are
    setuid/setgid files unless the metadata allows them; symlinks are kept as symlinks."""
    root = Path(root)
    allowed = load_meta(meta_file).files if meta_file else {}
    entries = []
    links: dict[tuple[int, int], list] = {}     # hard-linked files: (dev, ino) → [nlink, paths seen]
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                entries.append(Entry(rel, "symlink", 0o777, os.readlink(full)))
            elif stat.S_ISDIR(st.st_mode):
                entries.append(Entry(rel, "dir", stat.S_IMODE(st.st_mode), ""))
            elif stat.S_ISREG(st.st_mode):
                if st.st_mode & (stat.S_ISUID | stat.S_ISGID) and not (rel in allowed and allowed[rel].setuid):
                    raise RecipeError(f"{full}: setuid or setgid file in an overlay",
                                      hint=f"allow it in {meta_file or 'the overlay metadata'} "
                                           f"(files: {{{rel}: {{setuid: true}}}}) or drop the bit")
                if st.st_size > MAX_FILE_BYTES:
                    raise RecipeError(f"{full}: {st.st_size >> 20} MiB, more than an overlay file may be "
                                      f"({MAX_FILE_BYTES >> 20} MiB)",
                                      hint="ship big files in a package (apt.debs) or fetch them in a hook")
                if st.st_nlink > 1:
                    links.setdefault((st.st_dev, st.st_ino), [st.st_nlink]).append(full)
                kind = "template" if name.endswith(TEMPLATE_SUFFIX) else "file"
                entries.append(Entry(rel, kind, stat.S_IMODE(st.st_mode), _sha256(full)))
            else:
                raise RecipeError(f"{full}: device nodes, fifos and sockets are not copied from overlays",
                                  hint="create them with a hook if the image really needs them")
    for nlink, *seen in links.values():
        if len(seen) < nlink:      # another name of this file is outside the overlay (a host file)
            raise RecipeError(f"{seen[0]}: a hard link to a file outside the overlay",
                              hint="copy the file into the overlay (cp, not ln): its content would be "
                                   "whatever the other file holds when the image is built")
    return entries


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_digest(entries: list[Entry], meta: OverlayMeta) -> str:
    h = hashlib.sha256()
    for e in entries:
        h.update(f"{e.path}\0{e.kind}\0{e.mode:o}\0{e.digest}\n".encode())
    h.update(meta.model_dump_json().encode())
    return h.hexdigest()


def environment(root: Path):
    # Jinja2 is imported only by builds that have overlays (it costs 40 ms of every start).
    from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound
    from jinja2.sandbox import SandboxedEnvironment

    class InsideLoader(FileSystemLoader):
        """Templates only from the overlay itself: an include or import that goes through a
        symbolic link (the overlay may hold links to the image's own paths, such as
        /etc/shadow) would read the build host's file."""
        def get_source(self, environment, template):
            top = os.path.realpath(root)
            path = os.path.join(top, *template.split("/"))
            if os.path.realpath(path) != os.path.normpath(path) or not path.startswith(top + os.sep):
                raise TemplateNotFound(f"{template} (a template may not be read through a symbolic link)")
            return super().get_source(environment, template)

    return SandboxedEnvironment(loader=InsideLoader(str(root)), undefined=StrictUndefined,
                                keep_trailing_newline=True, autoescape=False)


def variables_used(root: Path, entries: list[Entry]) -> dict[str, list[str]]:
    """{variable: [templates using it]} for the top-level names the templates read."""
    from jinja2 import TemplateSyntaxError, meta
    env = environment(root)
    used: dict[str, list[str]] = {}
    for e in entries:
        if e.kind != "template":
            continue
        source = (Path(root) / e.path).read_text()
        try:
            ast = env.parse(source, name=e.path, filename=str(Path(root) / e.path))
        except TemplateSyntaxError as exc:
            raise RecipeError(f"{Path(root) / e.path}:{exc.lineno}: template syntax: {exc.message}") from None
        for name in meta.find_undeclared_variables(ast):
            used.setdefault(name, []).append(e.path)
    return used


def check_variables(root: Path, entries: list[Entry], available: set[str]) -> None:
    """Before any work: every top-level name a template reads is defined."""
    missing = []
    for name, templates in sorted(variables_used(root, entries).items()):
        if name in available:
            continue
        for t in templates:
            line = _line_of(Path(root) / t, name)
            missing.append(f"{Path(root) / t}:{line}: undefined variable '{name}'")
    if missing:
        raise RecipeError("\n".join(missing), hint="define it under vars: in the recipe or in the site file")


def _line_of(path: Path, name: str) -> int:
    pattern = re.compile(rf"\b{re.escape(name)}\b")
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if ("{{" in line or "{%" in line) and pattern.search(line):
            return n
    return 1


def render(root: Path, entries: list[Entry], meta_: OverlayMeta, variables: Mapping[str, Any]) -> list[Rendered]:
    """What to write, in order (parents before children). Rendering errors name the template,
    the line and the variable."""
    env = environment(root)
    out = []
    for e in entries:
        m = _meta_for(meta_, e.path)
        target = e.path[: -len(TEMPLATE_SUFFIX)] if e.kind == "template" else e.path
        if e.kind == "symlink":
            out.append(Rendered(target, "symlink", e.digest.encode(), 0o777, m.owner or "0", m.group or "0", e.path))
            continue
        mode = int(m.mode, 8) if m.mode else (e.mode & 0o7777 if e.kind != "dir" else 0o755)
        if mode & 0o6000 and not m.setuid:
            raise RecipeError(f"{root}: {e.path}: mode {m.mode} sets setuid/setgid",
                              hint="add setuid: true beside it in the overlay metadata if it is meant")
        if e.kind == "dir":
            data = b""
        elif e.kind == "file":
            data = (Path(root) / e.path).read_bytes()
        else:
            data = _render_one(env, root, e.path, variables)
        out.append(Rendered(target, "dir" if e.kind == "dir" else "file", data, mode,
                            m.owner or "0", m.group or "0", e.path))
    return out


def _meta_for(meta_: OverlayMeta, path: str) -> FileMeta:
    own = meta_.files.get(path) or meta_.files.get(path[: -len(TEMPLATE_SUFFIX)] if path.endswith(TEMPLATE_SUFFIX) else path)
    if own is None:
        return meta_.defaults
    merged = {**meta_.defaults.model_dump(exclude_none=True), **own.model_dump(exclude_none=True)}
    return FileMeta(**merged)


def _render_one(env, root: Path, path: str, variables: Mapping[str, Any]) -> bytes:
    from jinja2 import TemplateNotFound, TemplateSyntaxError, UndefinedError
    from jinja2.sandbox import SecurityError
    full = Path(root) / path
    try:
        return env.get_template(path).render(**variables).encode()
    except UndefinedError as exc:
        raise RecipeError(f"{full}:{_template_line(exc, full)}: {exc.message}",
                          hint="define it under vars: in the recipe or in the site file") from None
    except SecurityError as exc:
        raise RecipeError(f"{full}:{_template_line(exc, full)}: refused by the template sandbox: {exc}") from None
    except TemplateSyntaxError as exc:
        raise RecipeError(f"{full}:{exc.lineno}: template syntax: {exc.message}") from None
    except TemplateNotFound as exc:
        raise RecipeError(f"{full}:{_template_line(exc, full)}: no template {exc.message}",
                          hint="include or import only templates of the overlay itself, by their path in it")


def _template_line(exc: BaseException, full: Path) -> int:
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(full)]
    return lines[-1] if lines else 1
