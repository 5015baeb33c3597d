"""The archive's package names, from the same indexes the build downloads anyway, so that a
misspelt package is an error at plan time and not after minutes of bootstrapping."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import re
import urllib.error
import urllib.request
from pathlib import Path

from .. import log
from ..errors import RecipeError

_NAMES = re.compile(rb"^(?:Package|Provides): (.+)$", re.MULTILINE)


def _parse(index: bytes) -> set[str]:
    names = set()
    for m in _NAMES.finditer(index):
        for item in m.group(1).decode(errors="replace").split(","):
            name = item.strip().split(" ", 1)[0].split(":", 1)[0]
            if name:
                names.add(name)
    return names


def package_names(mirror: str, suite: str, component: str, arch: str, cache_dir: Path,
                  state: str, timeout: float = 60) -> set[str] | None:
    """Names (and virtual names) in one Packages index; None when it cannot be had at all.
    Kept per archive state, so a second plan reads a small local file."""
    base = f"{mirror}/dists/{suite}/{component}/binary-{arch}/Packages"
    ident = hashlib.sha256(f"{base}|{state}".encode()).hexdigest()[:24]
    cached = cache_dir / "archive" / f"names-{ident}.gz"
    if cached.is_file():
        return set(gzip.decompress(cached.read_bytes()).decode().split("\n")) - {""}
    data = None
    for suffix, unpack in ((".xz", lzma.decompress), (".gz", gzip.decompress), ("", bytes)):
        try:
            with urllib.request.urlopen(base + suffix, timeout=timeout) as resp:
                data = unpack(resp.read())
            break
        except (urllib.error.URLError, OSError, lzma.LZMAError, EOFError, ValueError):
            continue  # the next compression, or none
    if data is None:
        return None
    names = _parse(data)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_bytes(gzip.compress("\n".join(sorted(names)).encode(), 6))
        tmp.replace(cached)
    except OSError as exc:
        log.info(f"archive: cannot keep the package names of {base}: {exc}")
    return names


def bare_name(spec: str) -> str:
    """`pkg:arch=version` or `pkg/release` → `pkg`."""
    return re.split(r"[:=/]", spec, maxsplit=1)[0]


def missing_packages(wanted: dict[str, list[str]], available: set[str]) -> list[tuple[str, str, str | None]]:
    """(key path, name, nearest known name) for each wanted package the archive lacks."""
    import difflib
    out = []
    for where, specs in wanted.items():
        for spec in specs:
            name = bare_name(spec)
            if name not in available:
                close = difflib.get_close_matches(name, available, n=1, cutoff=0.75)
                out.append((where, name, close[0] if close else None))
    return out


def check_error(source: Path, suite: str, components: list[str], misses, extra: list[str] = ()) -> RecipeError:
    lines = []
    also = f" or the repositories {', '.join(extra)}" if extra else ""
    for where, name, close in misses:
        hint = f" (did you mean '{close}'?)" if close else ""
        lines.append(f"{source}: {where}: no package '{name}' in {suite} {' '.join(components)}{also}{hint}")
    return RecipeError("\n".join(lines))
