"""bootstrap: mmdebstrap (default) or debootstrap into the stage's tree.

Downloaded .debs go to the shared package cache (cache/apt-archives) and come back from it,
so an unchanged recipe rebuilds without downloading again. Lists stay in the tree: the
package layers install from them; seal removes them.
"""

from __future__ import annotations

from pathlib import Path

from ..ledger import Ledger
from ..plan import BuildPlan, Stage
from ..recipe import BootstrapTool
from ..run import Runner


def bootstrap_argv(plan: BuildPlan, tree: Path) -> list[str]:
    dist = plan.recipe.distribution
    cache = plan.paths.apt_archives
    if dist.bootstrap == BootstrapTool.debootstrap:
        return ["debootstrap", f"--variant={dist.variant}", f"--arch={dist.architecture}",
                f"--components={','.join(dist.components)}", f"--cache-dir={cache}",
                dist.suite, str(tree), plan.mirror]
    return ["mmdebstrap", "--mode=root", f"--variant={dist.variant}",
            f"--architectures={dist.architecture}", f"--components={' '.join(dist.components)}",
            "--skip=download/empty", "--skip=cleanup/apt/lists",
            '--setup-hook=mkdir -p "$1"/var/cache/apt/archives',
            f"--setup-hook=sync-in {cache} /var/cache/apt/archives/",
            f"--customize-hook=sync-out /var/cache/apt/archives {cache}",
            dist.suite, str(tree), plan.mirror]


def make(plan: BuildPlan, stage: Stage, partial: Path, ledger: Ledger, runner: Runner) -> dict:
    tree = partial / "tree"
    plan.paths.apt_archives.mkdir(parents=True, exist_ok=True)
    (plan.paths.apt_archives / "partial").mkdir(exist_ok=True)
    ledger.mounts_under(tree)  # the tool mounts proc/sys/dev itself; undo them if it is killed
    runner(bootstrap_argv(plan, tree))
    return {"tool": str(plan.recipe.distribution.bootstrap)}
