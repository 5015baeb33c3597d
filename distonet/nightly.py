"""`doit nightly recipe=a,b` (`distonet nightly a b`): build, boot-test and publish every recipe
named, incrementally, under one lock, with a summary and an exit status a scheduler can act on.

Incremental at each step: doit rebuilds only the stages and outputs whose keys changed; a build
whose manifest already records passing boots is not booted again; a build already on the share
is not published again. A recipe that fails does not stop the others (doit runs with
--continue); its failure is in the summary and in the exit status:

    0   every recipe is on the share (published now, or unchanged since an earlier run)
    1   a recipe failed to build, boot or publish (the others went on)
    2   a recipe or the site file is wrong: nothing ran
    75  another nightly run holds the lock: nothing ran (EX_TEMPFAIL; a timer tries again)

Each recipe's outcome is kept in cache/nightly/<recipe>.json (doit may run the recipes in worker
processes); the summary reads them back and is also written to output/nightly-summary.json.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

from . import log
from .errors import DistonetError
from .manifest import Manifest

LOCK = "nightly.lock"
EX_TEMPFAIL = 75
_held = None          # the lock's file, kept open for the life of the process that took it


class Busy(DistonetError):
    """Another nightly run holds the lock."""


def requested(argv: list[str]) -> bool:
    """Whether a doit command line runs the nightly tasks (doit reads its config before the tasks)."""
    return any(a == "nightly" or a.startswith("nightly:") for a in argv)


def take_lock(cache: Path) -> None:
    """Held until the process ends: two nightly runs on one build host never overlap."""
    global _held
    if _held is not None:
        return
    cache.mkdir(parents=True, exist_ok=True)
    fh = open(cache / LOCK, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip()
        fh.close()
        raise Busy(f"another nightly run holds {cache / LOCK}" + (f" ({holder})" if holder else ""),
                   hint="it ends on its own; this run did nothing (exit 75)") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    fh.flush()
    _held = fh


def _record_file(cache: Path, recipe: str) -> Path:
    return cache / "nightly" / f"{recipe}.json"


def _save(cache: Path, record: dict) -> None:
    from .fsutil import write_atomic
    f = _record_file(cache, record["recipe"])
    f.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(f, json.dumps(record, indent=2))


def check(plans) -> None:
    """Before anything runs: every recipe has a share to go to."""
    from .actions import publish_settings
    for plan in plans:
        publish_settings(plan)


def run_recipe(plan) -> dict:
    """The nightly:<recipe> task, once its build is done: boot it unless its manifest says it
    passed already, publish it unless the share has it."""
    from . import actions
    from .publish import share_for
    record = {"recipe": plan.name, "at": time.time(), "build_id": None, "boot": "-", "publish": "-",
              "where": None, "error": None}
    try:
        m = Manifest.load(plan.out_dir)
        record["build_id"] = m.build_id
        s = actions.publish_settings(plan)
        target = share_for(s.share, s.ssh_options)
        if m.build_id in {x.build_id for x in target.manifests(plan.name)}:
            record.update(boot="passed" if m.boots and all(b.reached for b in m.boots) else "-",
                          publish="unchanged")
        else:
            if m.boots and all(b.reached for b in m.boots):
                record["boot"] = "passed earlier"
            else:
                record["boot"] = "FAILED"          # until it passes
                actions.boot(plan)
                record["boot"] = "passed"
            record["publish"] = "FAILED"
            result = actions.publish(plan)
            record.update(publish="already there" if result.already else "published", where=result.where)
    except BaseException as exc:
        record["error"] = str(exc) or type(exc).__name__
        _save(plan.paths.cache, record)
        raise
    _save(plan.paths.cache, record)
    log.info(f"nightly {plan.name}: build {record['build_id']}, boot {record['boot']}, {record['publish']}")
    return record


def summary(plans_since, failed_tasks: set[str]) -> tuple[str, bool]:
    """The table the run ends with, and whether every recipe is on the share."""
    rows, ok = [], True
    for plan, since in plans_since:
        f = _record_file(plan.paths.cache, plan.name)
        rec = json.loads(f.read_text()) if f.is_file() else {}
        if rec.get("at", 0) < since:
            rec = {}
        if not rec:
            failed = sorted(t.split(":", 1)[0] for t in failed_tasks if t.endswith(f":{plan.name}"))
            rec = {"recipe": plan.name, "build_id": None, "boot": "-", "publish": "-",
                   "error": f"failed at {failed[0] if failed else 'build'}"}
        good = not rec.get("error") and rec.get("publish") in ("published", "already there", "unchanged")
        ok = ok and good
        rows.append(rec)
    head = ("recipe", "build", "boot", "publish", "where / error")
    table = [head] + [(r["recipe"], r.get("build_id") or "-", r.get("boot") or "-", r.get("publish") or "-",
                       r.get("error") or r.get("where") or "") for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(4)]
    lines = [f"nightly: {sum(1 for r in rows if r.get('publish') in ('published', 'already there'))} published, "
             f"{sum(1 for r in rows if r.get('publish') == 'unchanged')} unchanged, "
             f"{sum(1 for r in rows if r.get('error'))} failed, of {len(rows)}"]
    for row in table:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row[:4], widths)) + "  " + str(row[4]))
    if plans_since:
        out = plans_since[0][0].paths.output
        out.mkdir(parents=True, exist_ok=True)
        from .fsutil import write_atomic
        write_atomic(out / "nightly-summary.json", json.dumps({"ok": ok, "recipes": rows}, indent=2))
    return "\n".join(lines), ok


def print_summary(plans_since, failed_tasks: set[str]) -> None:
    text, _ = summary(plans_since, failed_tasks)
    print(text, file=sys.stderr)
