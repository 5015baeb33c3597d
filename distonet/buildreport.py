"""The build report people read on the share: a static page per published build (report.html
beside its artifacts) and an index per recipe (index.html beside `latest`).

A page shows the stage and output timings as a chart, the artifacts with their sizes and
checksums (linked), the boot tests, and the package diff against the build published before it:
added, removed, upgraded and downgraded with both versions, and for each upgrade the security
fixes its Debian changelog names (CVE, DSA, DLA ids) between the two versions. Charts are SVG
drawn at build time by matplotlib and put inline: the page fetches nothing, so it reads the same
from a file share, a web server or a laptop offline. Jinja2 escapes everything the page shows.
"""

from __future__ import annotations

import gzip
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from .manifest import Manifest
from .report import _size          # the build summary's sizes, the same everywhere

REPORT = "report.html"
INDEX = "index.html"
ADVISORY = re.compile(r"\b(CVE-\d{4}-\d{4,}|DSA-\d{3,}-\d+|DLA-\d{3,}-\d+)\b")
TRACKER = "https://security-tracker.debian.org/tracker/"


@dataclass
class Change:
    name: str
    old: str | None
    new: str | None
    advisories: list[str] = field(default_factory=list)
    note: str = ""                 # why no advisories could be read, when none are listed


@dataclass
class PackageDiff:
    previous: str | None           # the build id compared against, None for the first build
    added: list[Change]
    removed: list[Change]
    upgraded: list[Change]
    downgraded: list[Change]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.upgraded or self.downgraded)


def _versions(m: Manifest) -> dict[str, str]:
    return {p["name"]: p["version"] for p in m.packages}


def package_diff(new: Manifest, old: Manifest | None, changelog=None) -> PackageDiff:
    """`changelog(package)` → the text of its changelog.Debian in the new image, or None."""
    from debian.debian_support import Version
    if old is None:
        return PackageDiff(None, [], [], [], [])
    a, b = _versions(old), _versions(new)
    added = [Change(n, None, b[n]) for n in sorted(set(b) - set(a))]
    removed = [Change(n, a[n], None) for n in sorted(set(a) - set(b))]
    up, down = [], []
    for n in sorted(set(a) & set(b)):
        if a[n] == b[n]:
            continue
        c = Change(n, a[n], b[n])
        if Version(b[n]) > Version(a[n]):
            text = changelog(n) if changelog else None
            if text is None:
                c.note = "changelog not in the image"
            else:
                c.advisories = advisories(text, a[n], b[n])
            up.append(c)
        else:
            down.append(c)
    return PackageDiff(old.build_id, added, removed, up, down)


def advisories(changelog_text: str, old: str, new: str) -> list[str]:
    """The CVE/DSA/DLA ids named by the changelog entries after `old` up to `new`."""
    from debian.changelog import Changelog
    from debian.debian_support import Version
    found: list[str] = []
    try:
        blocks = list(Changelog(changelog_text, strict=False))
    except Exception:  # python-debian raises several kinds on a damaged file; no ids then
        return []
    for block in blocks:
        try:
            v = Version(str(block.version))
        except ValueError:
            continue
        if Version(old) < v <= Version(new):
            found += ADVISORY.findall("\n".join(block.changes()))
    return list(dict.fromkeys(found))


def image_changelogs(layers: list[Path]):
    """A `changelog(package)` reading /usr/share/doc/<package>/changelog.Debian.gz from a stack
    of stage trees (top first: overlayfs upper dirs over the bootstrap tree), following one doc
    link (a package whose doc folder is another's) inside the image, never out of it."""
    def find(rel: str) -> Path | None:
        for top in layers:
            p = top / rel
            if p.is_char_device():         # an overlayfs whiteout: deleted above the lower layers
                return None
            if p.is_symlink() or p.exists():
                return p
        return None

    def read(package: str) -> str | None:
        doc = f"usr/share/doc/{package}"
        d = find(doc)
        if d is not None and d.is_symlink():
            target = d.readlink()
            doc = (target if target.is_absolute() else Path("/usr/share/doc") / target).as_posix().lstrip("/")
            if ".." in Path(doc).parts:
                return None
        f = find(f"{doc}/changelog.Debian.gz")
        if f is None or f.is_symlink() or not f.is_file():
            return None
        try:
            with gzip.open(f, "rt", encoding="utf-8", errors="replace") as fh:
                return fh.read(4 << 20)
        except (OSError, EOFError):
            return None
    return read


def store_changelogs(stages_dir: Path | None, m: Manifest):
    """image_changelogs over the build's own stages in the local store; None when the store no
    longer holds all of them (pruned, or the build came from elsewhere)."""
    if stages_dir is None:
        return None
    from .store import StageStore
    store = StageStore(Path(stages_dir))
    keys = [s["key"] for s in m.stages]
    if not keys or not all(store.done(k) for k in keys):
        return None
    return image_changelogs([store.tree(k) for k in reversed(keys)])


def previous(manifests: list[Manifest], m: Manifest) -> Manifest | None:
    """The newest build published before `m` (by build time), to compare against."""
    older = [x for x in manifests if x.build_id != m.build_id and x.built_at < m.built_at]
    return max(older, key=lambda x: x.built_at) if older else None


def timings_svg(m: Manifest) -> str:
    """A horizontal bar chart of the stages' and outputs' seconds, as inline SVG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [(f"stage {s['name']}", s.get("seconds") or 0.0) for s in m.stages] + \
           [(f"output {o['name']}", o.get("seconds") or 0.0) for o in m.outputs]
    # a fixed salt for the SVG's ids: the same build renders the same bytes (a publish that runs
    # again finds the report already there, in a registry too)
    with matplotlib.rc_context({"svg.hashsalt": "distonet"}):
        return _chart(plt, rows)


def _chart(plt, rows) -> str:
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 0.9))
    try:
        labels = [r[0] for r in rows][::-1]
        values = [r[1] for r in rows][::-1]
        colors = ["#4878a8" if label.startswith("stage") else "#d08a3c" for label in labels]
        ax.barh(labels, values, color=colors)
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.1f} s", va="center", fontsize=8)
        ax.set_xlabel("seconds (when the step was built)")
        ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    finally:
        plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]          # inline: without the XML prolog and DOCTYPE


def render_report(m: Manifest, diff: PackageDiff, signed: bool = False) -> str:
    from . import templates
    return templates.render("report/build.html.j2", m=m, diff=diff, chart=timings_svg(m), size=_size,
                            signed=signed, tracker=TRACKER, boots=m.boots,
                            passed=bool(m.boots) and all(b.reached for b in m.boots))


@dataclass
class IndexRow:
    build_id: str
    built_at: str
    packages: int
    size: int
    boots: str
    latest: bool


def render_index(recipe: str, manifests: list[Manifest], latest: str | None) -> str:
    from . import templates
    rows = []
    for m in sorted(manifests, key=lambda x: x.built_at, reverse=True):
        boots = ("not tested" if not m.boots else
                 "passed" if all(b.reached for b in m.boots) else "FAILED")
        rows.append(IndexRow(m.build_id, m.built_at, len(m.packages), sum(a.size for a in m.artifacts),
                             boots, m.build_id == latest))
    return templates.render("report/index.html.j2", recipe=recipe, rows=rows, size=_size)
