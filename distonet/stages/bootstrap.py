"""bootstrap: mmdebstrap (default) or debootstrap into the stage's tree.

Downloaded .debs go to the shared package cache (cache/apt-archives) and come back from it,
and with mmdebstrap the package lists are kept per archive state (cache/apt-lists/<state>), so
an unchanged recipe rebuilds from scratch without the network. Lists stay in the tree: the
package layers install from them; seal removes them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..ledger import Ledger
from ..plan import BuildPlan, Stage
from ..recipe import BootstrapTool
from ..run import Runner


def lists_cache(plan: BuildPlan) -> Path:
    return plan.paths.cache / "apt-lists" / plan.archive[:24]


def bootstrap_argv(plan: BuildPlan, tree: Path, lists: Path | None = None, save_lists: Path | None = None) -> list[str]:
    """`lists`: reuse these package lists and skip `apt-get update`; `save_lists`: keep them there."""
    dist = plan.recipe.distribution
    cache = plan.paths.apt_archives
    if dist.bootstrap == BootstrapTool.debootstrap:
        return ["debootstrap", f"--variant={dist.variant}", f"--arch={dist.architecture}",
                f"--components={','.join(dist.components)}", f"--cache-dir={cache}",
                dist.suite, str(tree), plan.mirror]
    return ["mmdebstrap", "--mode=root", f"--variant={dist.variant}",
            f"--architectures={dist.architecture}", f"--components={' '.join(dist.components)}",
            # keep every .deb (essential ones too) for the package cache, and the lists
            "--skip=download/empty", "--skip=essential/unlink", "--skip=cleanup/apt/lists",
            '--setup-hook=mkdir -p "$1"/var/cache/apt/archives',
            f"--setup-hook=sync-in {cache} /var/cache/apt/archives/",
            f"--customize-hook=sync-out /var/cache/apt/archives {cache}",
            *(["--setup-hook=mkdir -p \"$1\"/var/lib/apt/lists",
               f"--setup-hook=sync-in {lists} /var/lib/apt/lists/", "--skip=update"] if lists else []),
            *([f"--customize-hook=sync-out /var/lib/apt/lists {save_lists}"] if save_lists else []),
            dist.suite, str(tree), plan.mirror]


def make(plan: BuildPlan, stage: Stage, partial: Path, ledger: Ledger, runner: Runner) -> dict:
    tree = partial / "tree"
    plan.paths.apt_archives.mkdir(parents=True, exist_ok=True)
    (plan.paths.apt_archives / "partial").mkdir(exist_ok=True)
    ledger.mounts_under(tree)  # the tool mounts proc/sys/dev itself; undo them if it is killed
    lists = lists_cache(plan)
    if plan.recipe.distribution.bootstrap != BootstrapTool.mmdebstrap:
        runner(bootstrap_argv(plan, tree))
    elif (lists / "lock").exists() or any(lists.glob("*_Packages*")):
        runner(bootstrap_argv(plan, tree, lists=lists))
    else:
        saving = lists.with_name(f"{lists.name}.partial-{os.getpid()}")
        shutil.rmtree(saving, ignore_errors=True)
        saving.mkdir(parents=True)
        runner(bootstrap_argv(plan, tree, save_lists=saving))
        shutil.rmtree(lists, ignore_errors=True)
        os.replace(saving, lists)
    return {"tool": str(plan.recipe.distribution.bootstrap)}
