"""A build's plan, kept for the next run whose inputs have not changed: the no-op build.

Planning itself is quick (about 0.07 s); importing what it needs is not: the recipe's and the
outputs' pydantic models and the builders take about 0.4 s of a no-op build that otherwise
takes about 0.5 s. So a run keeps a summary of its plans (names, keys, build id, the outputs'
files: what doit's graph and up-to-date checks read) with what the planning read, and the
next run with the same recipe names and environment takes the summary when

- every file planning opened and every directory it listed is unchanged (inode, size,
  mtime and ctime: ctime cannot be set back, so a restored old file counts as changed), as
  are the directories searched for recipes, overlays, hooks, keys, debs, elements and sites;
- distonet's own code is unchanged;
- the archive's state, fetched again as every plan does, is the same.

Planning that ran a program is not kept (its inputs are unknown). The audit hook
(sys.addaudithook) sees every open and directory listing, so no reader has to remember to
declare what it reads. A step that has work to do loads the whole plan (`full`), which must
give the same keys; if it does not, the kept summary is dropped and the step fails with a
request to run again, rather than build from a stale plan.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from .digest import digest
from .errors import BuildError
from .fsutil import write_atomic
from .keyed import Chained, Keyed
from .paths import Paths

FORMAT = 1
PACKAGE = Path(__file__).resolve().parent
_CODE_SUFFIXES = (".py", ".pyc", ".so", ".pth")


# -- what a kept plan gives ---------------------------------------------------------------------

@dataclass(frozen=True)
class StageSummary(Chained):
    name: str
    kind: str
    key: str
    doc: str
    parent: "StageSummary | None"


@dataclass(frozen=True)
class OutputSummary(Keyed):
    name: str
    key: str
    needs: tuple[str, ...]
    files: tuple[str, ...]


class PlanSummary:
    """What doit's graph, its up-to-date checks and the end-of-build table read of a plan,
    duck-typed like a BuildPlan for those readers; `full()` is the BuildPlan."""

    def __init__(self, data: dict, paths: Paths, kept: Path):
        self.asked, self.name, self.build_id = data["asked"], data["name"], data["build_id"]
        self.source = Path(data["source"])
        self.paths, self._kept = paths, kept
        stages: list[StageSummary] = []
        for s in data["stages"]:
            stages.append(StageSummary(s["name"], s["kind"], s["key"], s["doc"], stages[-1] if stages else None))
        self.stages = tuple(stages)
        self.outputs = tuple(OutputSummary(o["name"], o["key"], tuple(o["needs"]), tuple(o["files"]))
                             for o in data["outputs"])
        self._full = None

    @property
    def sealed(self) -> StageSummary:
        return self.stages[-1]

    @property
    def out_dir(self) -> Path:
        return self.paths.recipe_output(self.name)

    def stage(self, name: str) -> StageSummary:
        return next(s for s in self.stages if s.name == name)

    def output(self, name: str) -> OutputSummary:
        return next(o for o in self.outputs if o.name == name)

    def full(self):
        """The BuildPlan, planned again (a step has work to do): the same keys, or an error."""
        if self._full is None:
            from .pipeline import load_plan
            plan = load_plan(self.asked, self.paths)
            if summarize(plan, self.asked) != summarize(self, self.asked):
                self._kept.unlink(missing_ok=True)
                raise BuildError(f"{self.source}: the recipe's inputs changed while this build ran",
                                 hint="run the build again: it plans from the inputs as they are now")
            self._full = plan
        return self._full


def full(plan):
    """The BuildPlan for a plan or a kept summary of one."""
    return plan.full() if isinstance(plan, PlanSummary) else plan


def summarize(plan, asked: str) -> dict:
    return {"asked": asked, "name": plan.name, "source": str(plan.source), "build_id": plan.build_id,
            "stages": [{"name": s.name, "kind": s.kind, "key": s.key, "doc": s.doc} for s in plan.stages],
            "outputs": [{"name": o.name, "key": o.key, "needs": list(o.needs), "files": list(o.files)}
                        for o in plan.outputs]}


# -- what planning read ---------------------------------------------------------------------------

def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class Recording:
    """The files opened for reading and the directories listed while it is active, each with
    its state when it was read (taken before the read: a change after it shows next time)."""

    def __init__(self, skip: tuple[str, ...]):
        self.skip = skip
        self.seen: dict[str, list[int] | None] = {}
        self.ran: str | None = None        # a program run while planning: nothing is kept
        self.archives: list[list] = []     # [sources, state] of each archive_state call

    def note(self, event: str, args: tuple) -> None:
        if event == "subprocess.Popen":
            self.ran = str(args[0])
            return
        path = args[0]
        if event == "open":
            mode, flags = args[1], args[2]
            writes = any(c in mode for c in "wax+") if isinstance(mode, str) else \
                bool(flags & (os.O_WRONLY | os.O_RDWR))
            if writes:
                return
        if path is None:
            path = "."
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, (str, os.PathLike)):
            return                          # a file descriptor
        path = os.path.abspath(path)
        if path.endswith(_CODE_SUFFIXES) or path.startswith(self.skip) or path in self.seen:
            return
        self.seen[path] = _stat(path)


_RECORDING: list[Recording] = []
_LOCK = threading.Lock()
_HOOKED: list[bool] = []


def _audit(event: str, args: tuple) -> None:
    if _RECORDING and event in ("open", "os.listdir", "os.scandir", "subprocess.Popen"):
        with _LOCK:
            for r in _RECORDING:
                r.note(event, args)


class recording:
    """`with recording(paths) as r:` around planning."""

    def __init__(self, paths: Paths):
        self.rec = Recording(skip=(str(paths.cache) + os.sep,))

    def __enter__(self) -> Recording:
        if not _HOOKED:                     # an audit hook cannot be removed: one, idle when unused
            sys.addaudithook(_audit)
            _HOOKED.append(True)
        from .host import apt
        apt.WATCHERS.append(self.rec.archives)
        _RECORDING.append(self.rec)
        return self.rec

    def __exit__(self, *exc) -> None:
        from .host import apt
        _RECORDING.remove(self.rec)
        apt.WATCHERS.remove(self.rec.archives)


def _searched(paths: Paths) -> list[str]:
    """Directories looked into by name (is_file, is_dir), which no open or listing shows: a new
    entry in any of them changes its ctime."""
    dirs = [*paths.search, *paths.overlay_dirs, *paths.hook_dirs, *paths.initramfs_dirs, *paths.element_dirs,
            *paths.deb_dirs, *paths.key_dirs, *paths.site_dirs, paths.secrets, Path("/etc/apt")]
    return [os.path.abspath(d) for d in dict.fromkeys(dirs)]


def _code() -> str:
    """distonet's own code and templates: any change, any new file."""
    states = []
    for top, dirs, files in os.walk(PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        states += [(f, _stat(os.path.join(top, f))) for f in sorted(files)]
        states.append((top, _stat(top)))
    return digest(states)


# -- keeping and finding ----------------------------------------------------------------------------

def _where(names: list[str], paths: Paths) -> Path:
    env = {k: v for k, v in os.environ.items() if k.startswith("DISTONET_") and k != "DISTONET_VERBOSITY"}
    key = digest({"format": FORMAT, "names": names, "env": env, "paths": repr(paths), "cwd": os.getcwd(),
                  "python": [sys.executable, sys.version]})
    return paths.cache / "plans" / f"{key[:32]}.json"


def save(names: list[str], paths: Paths, plans: list, rec: Recording) -> None:
    """Keep the plans' summaries, unless planning ran a program; a failure to write is no error."""
    if rec.ran is not None:
        return
    seen = dict(rec.seen)
    for d in _searched(paths):
        seen.setdefault(d, _stat(d))
    record = {"format": FORMAT, "code": _code(), "seen": seen, "archives": rec.archives,
              "plans": [summarize(p, asked) for p, asked in zip(plans, dict.fromkeys(names))]}
    try:
        where = _where(names, paths)
        where.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(where, json.dumps(record))
    except OSError:
        pass


def load(names: list[str], paths: Paths | None = None) -> list[PlanSummary] | None:
    """The kept summaries of these recipes' plans, if nothing planning read has changed."""
    paths = paths or Paths.default()
    where = _where(names, paths)
    try:
        record = json.loads(where.read_bytes())
    except (OSError, ValueError):
        return None
    if record.get("format") != FORMAT or record["code"] != _code():
        return None
    if any(_stat(path) != state for path, state in record["seen"].items()):
        return None
    if record["archives"]:
        from .host.apt import archive_state
        from .errors import DistonetError
        for sources, state in record["archives"]:
            try:
                if archive_state([tuple(s) for s in sources], paths.cache) != state:
                    return None
            except DistonetError:
                return None              # planning again says what is wrong
    return [PlanSummary(p, paths, where) for p in record["plans"]]
