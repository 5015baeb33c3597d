"""packages.<layer>: apt-get install one named layer into its own overlayfs upper dir.
The kernel layer comes first (it changes rarely, so recipes that add layers reuse it)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from ..errors import BuildError
from ..host.chroot import chroot_argv, chroot_session
from .base import StageContext, StageKind

APT = ["apt-get", "-y", "-q", "--no-install-recommends",
       "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
       "-o", "APT::Keep-Downloaded-Packages=true"]

# No binary package caches: each layer would copy up ~50 MB of them, and seal drops them anyway.
# (As a file: apt ignores an empty value given with -o.)
BUILD_APT_CONF = 'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'

KERNEL_LAYER = "kernel"


def apt_install_argv(packages: list[str], proxy: str | None, recommends: bool = False) -> list[str]:
    # The proxy is a command-line option: it reaches this apt run and never a file in the image.
    opts = ["-o", f"Acquire::http::Proxy={proxy}"] if proxy else []
    apt = [a if a != "--no-install-recommends" or not recommends else "--install-recommends" for a in APT]
    return [*apt, *opts, "install", "--", *packages]


def apt_purge_argv(packages: list[str]) -> list[str]:
    return [*APT, "purge", "--autoremove", "--", *packages]


class Packages(StageKind):
    kind = "packages"
    order = 10
    version = 4

    @classmethod
    def instances(cls, recipe, facts):
        layers = [(KERNEL_LAYER, [recipe.kernel.package, *recipe.kernel.initramfs])]
        layers += [(name, list(pkgs)) for name, pkgs in recipe.packages.items() if pkgs]
        repos = [r["state"] for r in facts.repositories]
        for name, pkgs in layers:
            inputs = {"packages": sorted(set(pkgs)), "archive": facts.archive}
            if repos:  # what the extra repositories offer is part of what a layer installs
                inputs["repositories"] = repos
            rec = recipe.apt.recommends
            if rec is True or (isinstance(rec, tuple) and name in rec):
                inputs["recommends"] = True
            yield f"packages.{name}", inputs
        if facts.debs:  # local .deb files, by content
            yield "packages.local", {"debs": [{"name": d["name"], "sha256": d["sha256"]} for d in facts.debs],
                                     "archive": facts.archive}
        if recipe.apt.purge:
            yield "packages.purge", {"purge": sorted(set(recipe.apt.purge))}

    @classmethod
    def make(cls, ctx: StageContext) -> dict:
        merged = ctx.mount_for_writing()
        if "purge" in ctx.inputs:
            with chroot_session(ctx.ledger, merged, ctx.host.apt_archives):
                ctx.runner(chroot_argv(merged, apt_purge_argv(list(ctx.inputs["purge"]))))
            return {"purged": list(ctx.inputs["purge"])}
        if "debs" in ctx.inputs:
            return install_local(ctx, merged)
        packages = list(ctx.inputs["packages"])
        conf = merged / "etc/apt/apt.conf.d/00distonet-build"
        conf.write_text(BUILD_APT_CONF)
        try:
            with chroot_session(ctx.ledger, merged, ctx.host.apt_archives):
                ctx.runner(chroot_argv(merged, apt_install_argv(packages, ctx.host.proxy,
                                                                ctx.inputs.get("recommends", False))))
        finally:
            conf.unlink(missing_ok=True)
        return {"packages": packages}


def install_local(ctx: StageContext, merged) -> dict:
    """apt installs local .deb files (and their dependencies from the archive) from the
    session's /run, so the files themselves never stay in the image."""
    with chroot_session(ctx.ledger, merged, ctx.host.apt_archives):
        staging = merged / "run/distonet-debs"
        staging.mkdir(parents=True, exist_ok=True)
        inside = []
        for d in ctx.inputs["debs"]:
            src = Path(ctx.host.sources[f"deb:{d['name']}"])
            if hashlib.sha256(src.read_bytes()).hexdigest() != d["sha256"]:
                raise BuildError(f"{src} changed since the build was planned", hint="run the build again")
            shutil.copyfile(src, staging / d["name"])
            inside.append(f"/run/distonet-debs/{d['name']}")
        ctx.runner(chroot_argv(merged, apt_install_argv(inside, ctx.host.proxy)))
    return {"debs": [d["name"] for d in ctx.inputs["debs"]]}
