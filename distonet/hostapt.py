"""Facts taken from the build host's apt: the default mirror and the archive's current state."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from . import log
from .errors import BuildError

SOURCES = Path("/etc/apt")


def _os_codename(os_release: Path = Path("/etc/os-release")) -> str | None:
    try:
        for line in os_release.read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return None


def parse_sources(text: str, deb822: bool) -> list[tuple[str, list[str]]]:
    """(uri, suites) for each `deb` entry of a sources file in one-line or deb822 format."""
    entries = []
    if deb822:
        for para in text.split("\n\n"):
            fields: dict[str, str] = {}
            for line in para.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                k, v = line.split(":", 1)
                fields[k.strip().lower()] = v.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                for uri in fields.get("uris", "").split():
                    entries.append((uri, fields.get("suites", "").split()))
    else:
        for line in text.splitlines():
            parts = line.split("#", 1)[0].split()
            if len(parts) >= 3 and parts[0] == "deb":
                parts = [p for p in parts[1:] if not p.startswith("[")]
                entries.append((parts[0], [parts[1]]))
    return entries


def host_sources(apt_dir: Path = SOURCES) -> list[tuple[str, list[str]]]:
    files = [(apt_dir / "sources.list", False)]
    files += [(p, False) for p in sorted((apt_dir / "sources.list.d").glob("*.list"))]
    files += [(p, True) for p in sorted((apt_dir / "sources.list.d").glob("*.sources"))]
    entries = []
    for path, deb822 in files:
        if path.is_file():
            entries += parse_sources(path.read_text(), deb822)
    return entries


def pick_mirror(entries: list[tuple[str, list[str]]], codename: str | None) -> str | None:
    """The host's Debian archive: the entry serving the host's own release (not -security/-updates)."""
    for uri, suites in entries:
        if codename and codename in suites:
            return uri.rstrip("/")
    for uri, _ in entries:
        if uri.rstrip("/").endswith("/debian"):
            return uri.rstrip("/")
    return None


def default_mirror() -> str:
    mirror = pick_mirror(host_sources(), _os_codename())
    if not mirror:
        raise BuildError("no Debian mirror found in the build host's apt sources",
                         hint="set distribution.mirror in the recipe")
    return mirror


def archive_state(mirror: str, suite: str, cache_dir: Path, timeout: float = 10) -> str:
    """sha256 of the suite's InRelease: package stages are keyed on it, so a changed archive
    rebuilds them and an unchanged one does not. Offline, the last copy seen is used."""
    url = f"{mirror}/dists/{suite}/InRelease"
    cached = cache_dir / "archive" / (hashlib.sha256(url.encode()).hexdigest()[:24] + ".InRelease")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = resp.read()
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(cached)
    except (urllib.error.URLError, OSError) as exc:
        if not cached.is_file():
            raise BuildError(f"cannot read {url}: {exc}",
                             hint="check the network or distribution.mirror / distribution.suite") from None
        log.info(f"archive: {url} unreachable ({exc}); using the copy seen last")
        data = cached.read_bytes()
    return hashlib.sha256(data).hexdigest()
