"""Facts taken from the build host's apt: the default mirrors, its proxy, and the archive's state."""

from __future__ import annotations

import hashlib
import http.client
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from .. import log
from ..errors import BuildError
from ..fsutil import atomic_path

SOURCES = Path("/etc/apt")
# Lists that each archive_state call appends [sources, state] to (plancache.py: what a kept
# plan must find again).
WATCHERS: list[list] = []
_OPTIONS = re.compile(r"^\[[^\]]*\]\s*")


def _os_codename(os_release: Path = Path("/etc/os-release")) -> str | None:
    try:
        for line in os_release.read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return None


def deb822_stanzas(text: str):
    """The stanzas of a deb822 sources file (sources.list(5)): `Key: value` fields, keys in any
    case, a value going on in indented lines, `#` comment lines, blank lines between stanzas.
    Read by hand: importing python-debian's deb822 costs 45 ms, a tenth of a no-op build."""
    stanza: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if stanza:
                yield stanza
            stanza, key = {}, None
        elif line[0] in " \t":
            if key:
                stanza[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            stanza[key] = value.strip()
    if stanza:
        yield stanza


def parse_sources(text: str, deb822: bool) -> list[tuple[str, list[str]]]:
    """(uri, suites) for each enabled `deb` entry of a sources file, one-line or deb822.
    One-line entries may carry `[opt=a opt2=b]` options."""
    entries = []
    if deb822:
        for para in deb822_stanzas(text):
            if "deb" in para.get("types", "").split() and para.get("enabled", "yes").lower() != "no":
                for uri in para.get("uris", "").split():
                    entries.append((uri, para.get("suites", "").split()))
    else:
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if not line.startswith("deb ") and not line.startswith("deb\t"):
                continue
            rest = _OPTIONS.sub("", line[3:].strip())
            parts = rest.split()
            if len(parts) >= 2:
                entries.append((parts[0], [parts[1]]))
    return entries


def host_sources(apt_dir: Path = SOURCES) -> list[tuple[str, list[str]]]:
    files = [(apt_dir / "sources.list", False)]
    files += [(p, False) for p in sorted((apt_dir / "sources.list.d").glob("*.list"))]
    files += [(p, True) for p in sorted((apt_dir / "sources.list.d").glob("*.sources"))]
    entries = []
    for path, deb822 in files:
        if path.is_file():
            entries += parse_sources(path.read_text(errors="replace"), deb822)
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


def pick_security_mirror(entries: list[tuple[str, list[str]]]) -> str | None:
    for uri, suites in entries:
        if any(s.endswith("-security") or s.endswith("/updates") for s in suites):
            return uri.rstrip("/")
    return None


def default_mirror() -> str:
    mirror = pick_mirror(host_sources(), _os_codename())
    if not mirror:
        raise BuildError("no Debian mirror found in the build host's apt sources",
                         hint="set distribution.mirror in the recipe")
    return mirror


def default_security_mirror() -> str | None:
    return pick_security_mirror(host_sources())


def host_proxy() -> str | None:
    """The build host's own apt proxy (Acquire::http::Proxy), if it has one."""
    try:
        out = subprocess.run(["apt-config", "shell", "P", "Acquire::http::Proxy"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"P='([^']*)'", out)
    value = m.group(1) if m else ""
    return value if value.startswith(("http://", "https://")) else None


def archive_state(sources: list[tuple[str, str]], cache_dir: Path, timeout: float = 10) -> str:
    """sha256 over the InRelease of each (mirror, suite): package stages are keyed on it, so a
    changed archive rebuilds them and an unchanged one does not. The InRelease is the archive's
    signed content, the same on every mirror of it, so the mirror's URL never enters a key.
    Offline, the last copy seen is used."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=max(1, len(sources))) as pool:  # fetched side by side
        files = list(pool.map(lambda s: _in_release(s[0], s[1], cache_dir, timeout), sources))
    digest = hashlib.sha256()
    for data in files:
        digest.update(hashlib.sha256(data).digest())
    for watcher in WATCHERS:
        watcher.append([[list(s) for s in sources], digest.hexdigest()])
    return digest.hexdigest()


def archive_epoch(sources: list[tuple[str, str]], cache_dir: Path) -> int:
    """The build's SOURCE_DATE_EPOCH: the newest Date: of the suites' InRelease files (the copies
    archive_state kept), so a function of the archive state; 0 when none is known."""
    import email.utils
    newest = 0
    for mirror, suite in sources:
        try:
            text = _in_release_copy(mirror, suite, cache_dir).read_text(errors="replace")
        except OSError:
            continue
        date = re.search(r"(?m)^Date: (.+)$", text)
        if date:
            try:
                newest = max(newest, int(email.utils.parsedate_to_datetime(date.group(1).strip()).timestamp()))
            except (TypeError, ValueError):
                pass
    return newest


def _in_release_copy(mirror: str, suite: str, cache_dir: Path) -> Path:
    url = f"{mirror}/dists/{suite}/InRelease"
    return cache_dir / "archive" / (hashlib.sha256(url.encode()).hexdigest()[:24] + ".InRelease")


def _in_release(mirror: str, suite: str, cache_dir: Path, timeout: float) -> bytes:
    url = f"{mirror}/dists/{suite}/InRelease"
    cached = _in_release_copy(mirror, suite, cache_dir)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = resp.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise BuildError(f"{url}: not found (404): the archive has no suite '{suite}'",
                             hint="check distribution.suite (and distribution.mirror) in the recipe") from None
        return _last_copy(cached, url, exc)
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        return _last_copy(cached, url, exc)
    try:  # a full disk must not read as "unreachable": keeping the copy is a separate step
        if _read(cached) != data:      # unchanged, nothing is written: a no-op build writes no file
            cached.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cached) as tmp:
                tmp.write_bytes(data)
    except OSError as exc:
        log.info(f"archive: cannot keep a copy of {url} in {cached.parent}: {exc}")
    return data


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _last_copy(cached: Path, url: str, exc: Exception) -> bytes:
    if not cached.is_file():
        raise BuildError(f"cannot read {url}: {exc}",
                         hint="check the network or distribution.mirror / distribution.suite") from None
    log.info(f"archive: {url} unreachable ({exc}); using the copy seen last")
    return cached.read_bytes()
