"""Build-time benchmark, side by side in one run: for each checkout given (default: this one),
a cold build of a recipe (fresh stage cache and outputs, shared package cache), then a no-op
rebuild; runs interleaved, medians and ratios against the first checkout. Optionally a rebuild
after adding one late layer (this checkout only).

Usage (root): .venv/bin/python bench/build_times.py [--runs N] [--recipe R] [CHECKOUT ...]
A checkout is a directory with a dodo.py (for example a `git worktree` of an older commit);
each is driven by `python -m doit build recipe=R` from its own directory, so old and new
code run the same way.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed_doit(checkout: Path, env: dict, db: Path, *args: str) -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "doit", *args[:1], "--db-file", str(db), *args[1:]], cwd=checkout,
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - start


def one_run(checkout: Path, recipe: str, late: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="distonet-bench-", dir=ROOT / "cache") as tmp:
        tmp = Path(tmp)
        recipes = tmp / "recipes"
        shutil.copytree(checkout / "recipes", recipes)
        env = dict(os.environ, DISTONET_RECIPES=str(recipes), DISTONET_CACHE=str(tmp / "cache"),
                   DISTONET_OUTPUT=str(tmp / "output"), PYTHONDONTWRITEBYTECODE="1")
        # Share the downloaded packages (and lists): the benchmark measures building, not the network.
        (tmp / "cache").mkdir()
        for shared in ("apt-archives", "apt-lists", "archive"):
            if (ROOT / "cache" / shared).exists():
                os.symlink(ROOT / "cache" / shared, tmp / "cache" / shared)
        db = tmp / "doit.db"
        out = {"cold": timed_doit(checkout, env, db, "run", f"recipe={recipe}", "build"),
               "noop": timed_doit(checkout, env, db, "run", f"recipe={recipe}", "build")}
        if late:
            (recipes / "late.yaml").write_text(f"extends: {recipe}\npackages: {{late: [file]}}\n")
            out["late layer"] = timed_doit(checkout, env, db, "run", "recipe=late", "build")
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--recipe", default="minimal")
    ap.add_argument("checkouts", nargs="*", type=Path)
    a = ap.parse_args()
    checkouts = [c.resolve() for c in a.checkouts] or [ROOT]
    results: dict[Path, list[dict]] = {c: [] for c in checkouts}
    for run in range(a.runs):
        for c in checkouts:  # interleaved: drift in the machine's load hits every checkout alike
            results[c].append(one_run(c, a.recipe, late=(c == ROOT)))
            print(f"run {run + 1}: {c.name}: " + ", ".join(f"{k} {v:.2f}s" for k, v in results[c][-1].items()),
                  file=sys.stderr)
    base = checkouts[0]
    print(f"\n{'checkout':<24}{'case':<14}{'median s':>10}{'× first':>9}{'× cold':>9}")
    for c in checkouts:
        med = {k: statistics.median(r[k] for r in results[c]) for k in results[c][0]}
        for case, value in med.items():
            first = statistics.median(r[case] for r in results[base]) if case in results[base][0] else None
            print(f"{c.name:<24}{case:<14}{value:>10.2f}{(value / first if first else float('nan')):>9.3f}"
                  f"{value / med['cold']:>9.3f}")


if __name__ == "__main__":
    main()
