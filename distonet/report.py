"""What a person reads at the end of a build: stages and outputs, run or cached, seconds this
run, total, and the artifacts with their sizes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import outdir
from .errors import DistonetError
from .manifest import Manifest
from .store import StageStore

if TYPE_CHECKING:
    from .plan import BuildPlan


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def summary(plan: BuildPlan, since: float, failed: bool = False) -> str:
    store = StageStore(plan.paths.stages)
    rows = []
    for s in plan.stages:
        st = store.read_stamp(s.key) if store.done(s.key) else {}
        state = "missing" if not st else ("run" if st.get("started", 0) >= since else "cached")
        if st.get("pulled_at", 0) >= since:     # from the shared stage cache this run (stagecache.py)
            state, st = "pulled", {**st, "seconds": st.get("pulled_seconds")}
        rows.append((s.name, st.get("seconds"), state))
    for o in plan.outputs:
        where = outdir.find(plan.out_dir, o.name, o.key)
        st = outdir.read_state(where, o.name) if where else {}
        state = "missing" if not st else ("run" if st.get("started", 0) >= since else "cached")
        rows.append((f"output {o.name}", st.get("seconds"), state))
    width = max(len(r[0]) for r in rows)
    this_run = sum(r[1] or 0 for r in rows if r[2] in ("run", "pulled"))
    title = f"{plan.name}: {'FAILED' if failed else 'built'} ({plan.source})"
    lines = [title, f"{'step'.ljust(width)}  {'seconds':>8}  state", "-" * (width + 19)]
    for name, secs, state in rows:
        lines.append(f"{name.ljust(width)}  {secs if secs is not None else '-':>8}  {state}")
    lines.append(f"{'this run'.ljust(width)}  {this_run:>8.1f}")
    if not failed:
        try:
            m = Manifest.load(plan.out_dir)
            lines.append(f"artifacts in {plan.out_dir}/ (build {m.build_id}):")
            for a in m.artifacts:
                lines.append(f"  {a.path:<16} {a.kind:<8} {_size(a.size):>10}")
        except (DistonetError, TypeError, KeyError):  # the table prints without a manifest too
            pass
    return "\n".join(lines)
