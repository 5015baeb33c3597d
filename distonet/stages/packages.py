"""packages.<layer>: apt-get install one named layer into its own overlayfs upper dir."""

from __future__ import annotations

from pathlib import Path

from ..chroot import chroot_argv, chroot_session
from ..ledger import Ledger
from ..plan import BuildPlan, Stage
from ..run import Runner
from . import mount_for_writing

APT = ["apt-get", "-y", "-q", "--no-install-recommends",
       "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
       "-o", "APT::Keep-Downloaded-Packages=true"]

# No binary package caches: each layer would copy up ~50 MB of them, and seal drops them anyway.
# (As a file: apt ignores an empty value given with -o.)
BUILD_APT_CONF = 'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'



def make(plan: BuildPlan, stage: Stage, partial: Path, ledger: Ledger, runner: Runner) -> dict:
    packages = list(stage.inputs["packages"])
    merged = mount_for_writing(plan, stage, partial, ledger)
    conf = merged / "etc/apt/apt.conf.d/00distonet-build"
    conf.write_text(BUILD_APT_CONF)
    try:
        with chroot_session(ledger, merged, plan.paths.apt_archives):
            runner(chroot_argv(merged, [*APT, "install", *packages]))
    finally:
        conf.unlink(missing_ok=True)
    return {"packages": packages}
