"""packages.<layer>: apt-get install one named layer into its own overlayfs upper dir."""

from __future__ import annotations

from pathlib import Path

from ..chroot import chroot_argv, chroot_session
from ..ledger import Ledger
from ..plan import BuildPlan, Stage
from ..run import Runner
from . import finish_layer, mount_for_writing

APT = ["apt-get", "-y", "-q", "--no-install-recommends",
       "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
       "-o", "APT::Keep-Downloaded-Packages=true"]


def make(plan: BuildPlan, stage: Stage, partial: Path, ledger: Ledger, runner: Runner) -> dict:
    packages = list(stage.inputs["packages"])
    merged = mount_for_writing(plan, stage, partial, ledger)
    with chroot_session(ledger, merged, plan.paths.apt_archives):
        runner(chroot_argv(merged, [*APT, "install", *packages]))
    ledger.close()
    finish_layer(partial)
    return {"packages": packages}
