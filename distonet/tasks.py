"""BuildPlans → doit task dicts. Translation only: the actions live in actions.py.

Every task name carries its recipe (bootstrap:minimal, disk:minimal, build:minimal), so several
recipes share one graph: `doit build recipe=a,b` or `distonet build a b`. Recipes that share a
stage each have a task for it; the first to run builds it, the others find it done (their
up-to-date check runs just before they would). Stage tasks declare no target (doit refuses one
target for two tasks): their up-to-date check looks for the stamps of the stage and its
ancestors, which live in directories named by their keys, so a changed key reruns the stage.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
import time

from typing import TYPE_CHECKING

from doit.reporter import ConsoleReporter

from . import current, doitdb, log, plancache
from .errors import BuildError, DistonetError, report

if TYPE_CHECKING:
    from .plan import BuildPlan

DEFAULT_RECIPE = "minimal"

# Plans loaded by this process, for the end-of-run summary (the reporter prints it).
LOADED: list[tuple[BuildPlan, float]] = []
NIGHTLY: list[bool] = []     # non-empty when this run is a nightly one (its summary too)


def _nightly_requested(argv: list[str]) -> bool:
    from .nightly import requested
    return requested(argv)


class Reporter(ConsoleReporter):
    """doit's console reporter without its noise: our actions already said what failed, in one
    line, so a failure prints no Python reprs; the run ends with each recipe's table."""

    desc = "distonet: step lines, one-line errors, a summary table per recipe"

    def execute_task(self, task):
        if log.level() >= log.VERBOSE:
            super().execute_task(task)

    def skip_uptodate(self, task):
        if log.level() >= log.VERBOSE:
            super().skip_uptodate(task)

    def skip_ignore(self, task):
        pass

    def add_failure(self, task, fail):
        self.failures.append({"task": task, "exception": fail})

    def complete_run(self):
        try:
            actions = sys.modules.get("distonet.actions")  # not imported: nothing was built
            if actions is not None:
                actions.finish_behind()   # hashes and stage copies still running when a step failed
        except DistonetError as exc:
            self.runtime_errors.append(str(exc))
        failed = {f["task"].name.split(":", 1)[-1] for f in self.failures}
        for plan, since in LOADED:
            bad = plan.name in failed
            if bad or log.level() >= log.NORMAL:
                print(_summary(plan, since, bad), file=sys.stderr)
        if NIGHTLY:
            from .nightly import print_summary
            print_summary(LOADED, {f["task"].name for f in self.failures})
        for f in self.failures:
            exc = f["exception"]
            text = exc.get_msg() if hasattr(exc, "get_msg") else str(exc)
            if "distonet: error" not in text and "returned False" not in text:
                print(f"distonet: {f['task'].name} failed:\n{text.strip()[-3000:]}", file=sys.stderr)
        for msg in self.runtime_errors:
            print(f"distonet: {msg}", file=sys.stderr)
        if self.failures or self.runtime_errors:
            print(f"distonet: {len(self.failures)} step(s) failed: "
                  + ", ".join(f["task"].name for f in self.failures), file=sys.stderr)


def _summary(plan: BuildPlan, since: float, failed: bool) -> str:
    from .report import summary
    return summary(plan, since, failed)


DOIT_CONFIG = {
    "default_tasks": ["build"],
    # `doit nightly`: one recipe's failure does not stop the others (doit reads this before it
    # asks for the tasks, so it is decided from the command line here)
    "continue": _nightly_requested(sys.argv[1:]),
    "backend": doitdb.NAME,        # `doit` finds it in pyproject.toml, `distonet` passes it
    "dep_file": os.environ.get("DISTONET_DOIT_DB", ".doit.db"),
    "verbosity": 2,
    "action_string_formatting": "new",
    "reporter": Reporter,
}


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _signals() -> None:
    """SIGTERM unwinds like Ctrl-C: undo what was started, one line, exit 143."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _action(fn: str, plan: BuildPlan, what: str, *args):
    """The doit boundary: an error becomes one line naming the recipe file and the step; an
    interrupt ends the run at once with 130 or 143, after the step has undone its work. `fn`
    names a function of actions.py, imported (with the whole plan) only when a step runs."""
    def action():
        _signals()
        try:
            from . import actions
            getattr(actions, fn)(plancache.full(plan), *args)
        except KeyboardInterrupt as exc:
            sys.stderr.flush()
            os._exit(report(exc))
        except DistonetError as exc:
            report(exc, where=f"{plan.source}: {what}")
            return False
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            report(BuildError(f"{exc.filename or 'a file'}: {exc.strerror}",
                              hint="free space where it is: the stage cache (DISTONET_CACHE) or the "
                                   "output folder (DISTONET_OUTPUT); nothing half-made is kept"),
                   where=f"{plan.source}: {what}")
            return False
        return None
    action.__name__ = action.__qualname__ = f"{what} of {plan.name}"
    return action


class Check:
    """An uptodate callable that says what it checks in `doit info`."""

    def __init__(self, what: str, fn):
        self.what, self.fn = what, fn

    def __call__(self) -> bool:
        return bool(self.fn())

    def __repr__(self) -> str:
        return self.what


def make_tasks(plan: BuildPlan):
    r = plan.name
    for stage in plan.stages:
        yield {
            "basename": stage.name, "name": r,
            "doc": f"{stage.kind} stage [{stage.short}]",
            "actions": [_action("build_stage", plan, f"stage {stage.name}", stage.name)],
            "uptodate": [Check(f"snapshot {stage.short} and its parents are complete",
                               lambda s=stage: current.stage_done(plan, s))],
            "task_dep": [f"{stage.parent.name}:{r}"] if stage.parent else [],
            "verbosity": 2,
        }
    for step in plan.outputs:
        files = step.files
        yield {
            "basename": step.name, "name": r,
            "doc": f"output {', '.join(files)} [{step.short}]",
            "actions": [_action("build_output", plan, f"output {step.name}", step.name)],
            "uptodate": [Check(f"{step.name} was made for key {step.short} and is unchanged",
                               lambda n=step.name: current.output_current(plan, n))],
            "task_dep": [f"{plan.sealed.name}:{r}", *(f"{n}:{r}" for n in step.needs)],
            "verbosity": 2,
        }
    yield {
        "basename": "manifest", "name": r,
        "doc": "manifest.json and SHA256SUMS; the new set of artifacts appears at once",
        "actions": [_action("commit", plan, "manifest")],
        "uptodate": [Check(f"manifest is for build {plan.build_id}", lambda: current.manifest_current(plan))],
        "task_dep": [f"{o.name}:{r}" for o in plan.outputs],
        "verbosity": 2,
    }
    yield {
        "basename": "build", "name": r,
        "doc": f"build {plan.source} into {plan.out_dir}",
        "actions": None,
        "task_dep": [f"manifest:{r}"],
        "clean": [_action("clean", plan, "clean")],
    }
    yield {
        "basename": "publish", "name": r,
        "doc": f"publish {r}'s boot-tested build to the share (share=PATH, or the site file's publish:)",
        "actions": [_action("publish", plan, "publish")],
        "task_dep": [f"manifest:{r}"],
        "verbosity": 2,
    }
    yield {
        "basename": "nightly", "name": r,
        "doc": f"build {r}, boot-test it unless it passed already, publish it unless the share has it",
        "actions": [_action("nightly", plan, "nightly")],
        "task_dep": [f"manifest:{r}"],
        "uptodate": [False],
        "verbosity": 2,
    }
    yield {
        "basename": "boot", "name": r,
        "doc": f"boot {r}'s disk under QEMU with each firmware; record the results in the manifest",
        "actions": [_action("boot", plan, "boot")],
        "task_dep": [f"manifest:{r}"],
        "verbosity": 2,
    }


def split_names(value: str | None) -> list[str]:
    """`recipe=a,b` or `recipe="a b"`; empty means the default recipe, an empty name is an error."""
    if value is None:
        return [DEFAULT_RECIPE]
    names = [n for n in value.replace(",", " ").split()]
    if not names:
        raise DistonetError("recipe=: no recipe named", hint="recipe=minimal, or several: recipe=a,b")
    return names


def load_tasks(names: list[str], offline_ok: bool = False, kept: bool = True):
    """Every task of every named recipe. A bad recipe raises RecipeError (all recipes' errors).
    With `kept`, a plan kept by an earlier run whose inputs have not changed stands in for
    planning (plancache.py); listing and cleaning, which may run offline, always plan."""
    since = time.time()
    plans = plancache.load(names) if kept and not offline_ok else None
    if plans is None:
        from .paths import Paths
        from .pipeline import load_plan, load_plans
        paths = Paths.default()
        load_plan.cache_clear()          # planned in this recording, so that its reads are seen
        with plancache.recording(paths) as rec:
            plans = load_plans(names, paths, offline_ok=offline_ok)
        if kept and not offline_ok:
            plancache.save(names, paths, plans, rec)
    tasks = []
    for plan in plans:
        LOADED.append((plan, since))
        tasks += list(make_tasks(plan))
    # A group per step name (`doit bootstrap` runs it for every loaded recipe), defined first.
    docs = {s.name: _stage_doc(s) for plan in plans for s in plan.stages}
    groups = list(dict.fromkeys(t["basename"] for t in tasks))
    return [{"basename": b, "name": None, "doc": docs.get(b) or _group_doc(b)} for b in groups] + tasks


def _stage_doc(stage) -> str:
    if stage.name.startswith("packages."):
        return f"stage: install the {stage.name.split('.', 1)[1]} package layer"
    return f"stage: {stage.doc}" + (f" ({stage.name[len(stage.kind) + 1:]})" if stage.name != stage.kind else "")


def _group_doc(basename: str) -> str:
    fixed = {"build": "build the recipes (recipe=a,b; default minimal)",
             "boot": "boot the recipes' disks under QEMU; results go to the manifest",
             "publish": "publish the recipes' boot-tested builds to the share (share=PATH)",
             "nightly": "build, boot-test and publish the recipes, under a lock, with a summary",
             "manifest": "write manifest.json and SHA256SUMS; the new artifacts appear at once"}
    return fixed.get(basename, f"output: {basename}")


OFFLINE_COMMANDS = ("list", "clean", "info", "forget", "help", "ignore", "dumpdb", "strace", "tabcompletion")


def load_tasks_or_exit(value: str | None, site: str | None = None, share: str | None = None,
                       cache: str | None = None):
    """For dodo.py: the tasks, or one clean message and exit 2. Listing and cleaning work with
    the mirror unreachable (an unknown archive state only affects which stages `clean` finds)."""
    command = next((a for a in sys.argv[1:] if not a.startswith("-") and "=" not in a), "run")
    if site:
        os.environ["DISTONET_SITE"] = site  # doit's worker processes inherit it
    if share:
        os.environ["DISTONET_SHARE"] = share
    if cache:
        os.environ["DISTONET_STAGE_CACHE"] = cache   # stagecache.py: pull missing stages, push new ones
    try:
        if command not in OFFLINE_COMMANDS and os.geteuid() != 0:
            raise DistonetError("distonet builds, boots and cleans as root (it mounts, chroots and "
                                "creates device nodes)", hint="run it with sudo, or as root")
        nightly = _nightly_requested(sys.argv[1:])
        names = split_names(value) if value is not None or not nightly else all_recipes()
        tasks = load_tasks(names, offline_ok=command in OFFLINE_COMMANDS, kept=not nightly)
        if nightly:
            start_nightly([p for p, _ in LOADED])
        return tasks
    except DistonetError as exc:
        from .nightly import Busy, EX_TEMPFAIL
        code = report(exc)
        raise SystemExit(EX_TEMPFAIL if isinstance(exc, Busy) else code)


def all_recipes() -> list[str]:
    """`doit nightly` without recipe=: every recipe on the search path."""
    from .paths import Paths
    from .recipe import known_recipes
    return sorted(known_recipes(Paths.default().search))


def start_nightly(plans) -> None:
    """Every recipe has a share, and this process holds the nightly lock until it ends."""
    from . import nightly
    nightly.check(plans)
    nightly.take_lock(plans[0].paths.cache)
    NIGHTLY.append(True)
