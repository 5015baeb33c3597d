"""`distonet verify`: prove the stage store and the output folder sound.

Store: every stamped stage has its tree, its stamp names its own key, and the layers it was
built on (the stamp's `parents`) are stamped too. Each stage's layers are then mounted
read-only, as a build sees them, and every path dpkg lists for the packages this layer
installed (`var/lib/dpkg/info/*.list` in the layer itself, diversions and path-excludes
honoured) must be there; `content=True` also checks every file against dpkg's md5sums.
Outputs: every manifest's artifacts are there with their size and SHA-256, and SHA256SUMS
says the same. A snapshot without a stamp or a partial of a dead build is a leftover the next
build clears: said, not unsound.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .fsutil import sha256_file
from .host.ledger import Ledger
from .host.namespace import enter_private_mounts
from .manifest import SUMS, Manifest
from .paths import Paths
from .store import StageStore, dir_name


@dataclass
class Report:
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)     # unsound: a build would use these
    leftovers: list[str] = field(default_factory=list)    # harmless: the next build clears them

    @property
    def sound(self) -> bool:
        return not self.problems


def verify(paths: Paths, content: bool = False, recipes: list[str] | None = None) -> Report:
    """The whole store and output/, or only `recipes`' builds and the stages they name.

    It mounts layers to check them, so it moves the calling process into a private mount
    namespace (once): a caller that later unmounts something it mounted before must do that
    from another process, or run verify in one (`distonet verify`)."""
    report = Report()
    keys = None
    if recipes:
        keys = set()
        for name in recipes:
            try:
                keys |= {s["key"] for s in Manifest.load(paths.output / name).stages}
            except Exception as exc:
                report.problems.append(f"{name}: no readable manifest in {paths.output / name} ({exc})")
    verify_store(paths, report, content, keys)
    verify_outputs(paths, report, recipes)
    return report


# -- the stage store --------------------------------------------------------------------------

def verify_store(paths: Paths, report: Report, content: bool = False, keys: set[str] | None = None) -> None:
    """Every stage (or those of `keys` and their layers)."""
    store = StageStore(paths.stages)
    dead = set(store.dead_partials())
    stamps: dict[str, dict] = {}
    for entry in store.entries():
        if ".partial-" in entry.name:
            if entry in dead:
                report.leftovers.append(f"{entry.name}: a partial of a build that is gone")
            continue
        if not entry.is_dir():
            continue
        stamp_path = entry / "stamp.json"
        if not stamp_path.exists():
            report.leftovers.append(f"{entry.name}: a snapshot without a stamp (never counted)")
            continue
        try:
            stamp = json.loads(stamp_path.read_text())
        except (OSError, ValueError) as exc:
            report.problems.append(f"{stamp_path}: unreadable stamp ({exc})")
            continue
        key = stamp.get("key", "")
        if dir_name(key) != entry.name:
            report.problems.append(f"{stamp_path}: names key {key[:12]!r}, not its own directory's")
            continue
        if not (entry / "tree").is_dir():
            report.problems.append(f"{entry.name} ({stamp.get('stage')}): stamped, but its tree is missing")
            continue
        stamps[key] = stamp
    for key, stamp in stamps.items():
        if keys is not None and key not in keys:
            continue
        name = f"stage {stamp.get('stage')} [{key[:12]}]"
        parents = stamp.get("parents")
        missing = [p[:12] for p in parents or () if p not in stamps]
        if missing:
            report.problems.append(f"{name}: built on {', '.join(missing)}, which the store does not hold")
            continue
        if parents is None:
            report.checked.append(f"{name}: stamp and tree (made before stamps named their layers)")
            continue
        problems = _check_packages(paths, store, key, parents, content)
        report.problems += [f"{name}: {p}" for p in problems]
        if not problems:
            report.checked.append(f"{name}: every file of its packages present"
                                  + (" and matching dpkg's md5sums" if content else ""))


def _check_packages(paths: Paths, store: StageStore, key: str, parents: list[str], content: bool) -> list[str]:
    own = store.tree(key) / "var/lib/dpkg/info"
    lists = sorted(own.glob("*.list")) if own.is_dir() else []
    if not lists:
        return []
    enter_private_mounts()
    merged = paths.work / f"verify-{os.getpid()}-{key[:12]}"
    with Ledger(paths.ledger) as ledger:
        if parents:
            root = store.mount(ledger, [key, *parents], merged)
        else:
            root = store.tree(key)
        return _check_lists(root, lists, content)


def _check_lists(root: Path, lists: list[Path], content: bool) -> list[str]:
    diverted = _diversions(root)
    excluded = _path_excludes(root)
    problems = []
    for listing in lists:
        package = listing.name[:-len(".list")]
        missing = []
        for path in listing.read_text(errors="surrogateescape").splitlines():
            if not path.startswith("/") or path == "/." or excluded(path):
                continue
            # A diverted path's file is at the diversion's target, unless this package is the
            # one that diverts it (or the usr-merge diversions name targets that never exist).
            if not any(os.path.lexists(root / p.lstrip("/")) for p in (path, diverted.get(path, path))):
                missing.append(path)
        if missing:
            problems.append(f"package {package}: {len(missing)} file(s) missing, e.g. {missing[0]}")
        if content:
            problems += _check_md5sums(root, listing.with_suffix(".md5sums"), package, diverted)
    return problems


def _check_md5sums(root: Path, sums: Path, package: str, diverted: dict[str, str]) -> list[str]:
    if not sums.exists():
        return []
    bad = []
    for line in sums.read_text(errors="surrogateescape").splitlines():
        digest, _, rel = line.partition("  ")
        path = "/" + rel
        files = [f for f in dict.fromkeys(root / p.lstrip("/") for p in (path, diverted.get(path, path)))
                 if f.is_file() and not f.is_symlink()]
        if files and digest not in {_md5(f) for f in files}:    # (a diverted one: either place)
            bad.append(path)
    return [f"package {package}: {len(bad)} file(s) differ from dpkg's md5sums, e.g. {bad[0]}"] if bad else []


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _diversions(root: Path) -> dict[str, str]:
    """dpkg's diversions: the listed path → where the file really is."""
    f = root / "var/lib/dpkg/diversions"
    lines = f.read_text().splitlines() if f.exists() else []
    return {lines[i]: lines[i + 1] for i in range(0, len(lines) - 2, 3)}


def _path_excludes(root: Path):
    """dpkg's path-exclude/path-include filters (etc/dpkg/dpkg.cfg.d): files never installed."""
    rules = []
    cfg = root / "etc/dpkg/dpkg.cfg.d"
    for f in sorted(cfg.iterdir()) if cfg.is_dir() else []:
        if f.is_file():
            for line in f.read_text(errors="replace").splitlines():
                rule = re.match(r"\s*(path-exclude|path-include)[=\s]\s*(\S+)", line)
                if rule:
                    rules.append((rule.group(1), rule.group(2)))

    def excluded(path: str) -> bool:
        out = False
        for verb, pattern in rules:
            if fnmatch.fnmatchcase(path, pattern):
                out = verb == "path-exclude"
        return out
    return excluded


# -- the outputs ------------------------------------------------------------------------------

def verify_outputs(paths: Paths, report: Report, recipes: list[str] | None = None) -> None:
    manifests = sorted(paths.output.glob("*/manifest.json")) if paths.output.is_dir() else []
    for manifest in manifests:
        if recipes and manifest.parent.name not in recipes:
            continue
        build = manifest.parent
        try:
            m = Manifest.load(build)
        except Exception as exc:
            report.problems.append(f"{manifest}: unreadable ({exc})")
            continue
        bad = []
        for a in m.artifacts:
            f = build / a.path
            if not f.is_file():
                bad.append(f"{a.path} missing")
            elif f.stat().st_size != a.size:
                bad.append(f"{a.path} is {f.stat().st_size} bytes, the manifest says {a.size}")
            elif sha256_file(f) != a.sha256:
                bad.append(f"{a.path} does not match its SHA-256")
        sums = build / SUMS
        listed = {}
        if sums.exists():
            for line in sums.read_text().splitlines():
                digest, _, rel = line.partition("  ")
                listed[rel.lstrip("*")] = digest
        if listed != {a.path: a.sha256 for a in m.artifacts}:
            bad.append(f"{SUMS} does not list the manifest's artifacts")
        bad += [f"hygiene: {p}" for p in _hygiene(paths, build, m)]
        if bad:
            report.problems += [f"{m.recipe} build {m.build_id}: {b}" for b in bad]
        else:
            report.checked.append(f"{m.recipe} build {m.build_id}: {len(m.artifacts)} artifacts match their digests")


def _hygiene(paths: Paths, build: Path, m: Manifest) -> list[str]:
    """hygiene.py's checks: the artifacts, and the sealed image (its layers mounted read-only,
    when the store still holds them)."""
    from . import hygiene
    problems = hygiene.check_artifacts(build, m.artifacts, m.resolved_recipe, m.recipe)
    store = StageStore(paths.stages)
    keys = [s["key"] for s in reversed(m.stages)]          # topmost first
    if not keys or not all(store.done(k) for k in keys):
        return problems
    enter_private_mounts()
    merged = paths.work / f"hygiene-{os.getpid()}-{keys[0][:12]}"
    with Ledger(paths.ledger) as ledger:
        root = store.mount(ledger, keys, merged) if len(keys) > 1 else store.tree(keys[0])
        problems += hygiene.check_tree(root, m.resolved_recipe)
        sbom = next((build / a.path for a in m.artifacts if a.kind == "sbom"), None)
        if sbom is not None and sbom.is_file():
            problems += hygiene.check_sbom(root, sbom)
    return problems
