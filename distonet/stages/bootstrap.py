"""bootstrap: mmdebstrap (default) or debootstrap into the stage's tree.

Downloaded .debs go to the shared package cache (cache/apt-archives), bound into the tree while
the tool runs, and with mmdebstrap the package lists are kept per archive state and mirror
(cache/apt-lists/<id>), so an unchanged recipe rebuilds from scratch without the network.
Lists stay in the tree: the package layers install from them; seal removes them.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shlex
import shutil
from pathlib import Path
from typing import Any, Mapping

from ..enums import BootstrapTool
from ..host.locks import wait_lock
from ..reproducible import epoch_env
from .base import HostFacts, StageContext, StageKind


def apt_lines(inputs: Mapping[str, Any], host: HostFacts) -> list[str]:
    """The archive lines the build (and, through mmdebstrap, the image's sources.list) use."""
    comps = " ".join(inputs["components"])
    mirror = inputs.get("mirror") or host.mirror
    lines = [f"deb {mirror} {inputs['suite']} {comps}"]
    if inputs.get("updates"):
        lines.append(f"deb {mirror} {inputs['suite']}-updates {comps}")
    if inputs.get("security"):
        lines.append(f"deb {host.security_mirror} {inputs['suite']}-security {comps}")
    return lines


def proxy_env(host: HostFacts) -> dict | None:
    """The proxy reaches the bootstrap tool through its environment: an --aptopt would be
    written into the image's apt.conf.d."""
    if not host.proxy:
        return None
    return {"http_proxy": host.proxy, "https_proxy": host.proxy}


def lists_cache(inputs: Mapping[str, Any], host: HostFacts) -> Path:
    # Lists are named after the mirror they came from: keyed by archive state *and* the lines.
    ident = hashlib.sha256(("\n".join(apt_lines(inputs, host)) + inputs["archive"]).encode()).hexdigest()
    return host.cache / "apt-lists" / ident[:24]


def bootstrap_argv(inputs: Mapping[str, Any], host: HostFacts, tree: Path,
                   lists: Path | None = None, save_lists: Path | None = None) -> list[str]:
    """`lists`: reuse these package lists and skip `apt-get update`; `save_lists`: keep them there."""
    cache = host.apt_archives
    if inputs["tool"] == BootstrapTool.debootstrap:
        return ["debootstrap", f"--variant={inputs['variant']}", f"--arch={inputs['architecture']}",
                f"--components={','.join(inputs['components'])}", f"--cache-dir={cache}",
                inputs["suite"], str(tree), inputs.get("mirror") or host.mirror]  # no `--` in debootstrap; suites are validated
    return ["mmdebstrap", "--mode=root", f"--variant={inputs['variant']}",
            f"--architectures={inputs['architecture']}", f"--components={' '.join(inputs['components'])}",
            # keep every .deb (essential ones too) for the package cache, and the lists
            "--skip=download/empty", "--skip=essential/unlink", "--skip=cleanup/apt/lists",
            # The shared cache itself, bound (not copied in and out: a site's cache holds GBs of
            # other recipes' packages), and unbound before mmdebstrap cleans up.
            '--setup-hook=mkdir -p "$1"/var/cache/apt/archives',
            f'--setup-hook=mount -o bind {shlex.quote(str(cache))} "$1"/var/cache/apt/archives',
            '--customize-hook=umount "$1"/var/cache/apt/archives',
            *(["--setup-hook=mkdir -p \"$1\"/var/lib/apt/lists",
               f"--setup-hook=sync-in {lists} /var/lib/apt/lists/", "--skip=update"] if lists else []),
            *([f"--customize-hook=sync-out /var/lib/apt/lists {save_lists}"] if save_lists else []),
            # `--` ends the options: a suite can never be read as one
            "--", inputs["suite"], str(tree), *apt_lines(inputs, host)]


class Bootstrap(StageKind):
    kind = "bootstrap"
    doc = "debootstrap or mmdebstrap"
    order = 0
    version = 3     # 3: SOURCE_DATE_EPOCH

    @classmethod
    def instances(cls, recipe, facts):
        dist = recipe.distribution
        inputs = {"suite": dist.suite, "architecture": str(dist.architecture),
                  "components": list(dist.components), "tool": str(dist.bootstrap),
                  "variant": str(dist.variant), "archive": facts.archive,
                  "updates": facts.updates, "security": facts.security}
        if dist.mirror:  # a mirror the recipe names is part of the image (its sources.list)
            inputs["mirror"] = dist.mirror.rstrip("/")
        yield "bootstrap", inputs

    @classmethod
    def host_tools(cls, inputs):
        return (inputs["tool"],)

    @classmethod
    def make(cls, ctx: StageContext) -> dict:
        inputs, host, runner = ctx.inputs, ctx.host, ctx.runner
        tree = ctx.partial / "tree"
        host.apt_archives.mkdir(parents=True, exist_ok=True)
        (host.apt_archives / "partial").mkdir(exist_ok=True)
        ctx.ledger.mounts_under(tree)  # the tool mounts proc/sys/dev itself; undo them if it is killed
        lists = lists_cache(inputs, host)
        env = {**(proxy_env(host) or {}), **epoch_env(host.epoch)} or None  # mmdebstrap passes it on
        # the tool writes the shared download cache itself: one build at a time (chroot.py)
        lock = wait_lock(host.apt_archives.parent / "apt-archives.lock", fcntl.LOCK_EX,
                         "another build is using the shared apt download cache")
        try:
            cls._run(inputs, host, tree, lists, env, runner)
        finally:
            os.close(lock)
        return {"tool": inputs["tool"], "apt": apt_lines(inputs, host)}

    @staticmethod
    def _run(inputs, host, tree, lists, env, runner) -> None:
        if inputs["tool"] != BootstrapTool.mmdebstrap:
            runner(bootstrap_argv(inputs, host, tree), env=env)
        elif (lists / "lock").exists() or any(lists.glob("*_Packages*")):
            runner(bootstrap_argv(inputs, host, tree, lists=lists), env=env)
        else:
            saving = lists.with_name(f"{lists.name}.partial-{os.getpid()}")
            shutil.rmtree(saving, ignore_errors=True)
            saving.mkdir(parents=True)
            try:
                runner(bootstrap_argv(inputs, host, tree, save_lists=saving), env=env)
            except BaseException:
                shutil.rmtree(saving, ignore_errors=True)
                raise
            shutil.rmtree(lists, ignore_errors=True)
            os.replace(saving, lists)
