"""elements, elements.finalise: diskimage-builder elements' in-chroot phases, run with
diskimage-builder's own dib-run-parts on the hooks tree it would have made (/tmp/in_target.d).

    stage              phases                           where in the chain
    elements           pre-install, install,            after hooks.post-install, before the
                       post-install                     overlays
    elements.finalise  finalise                         after hooks.finalise

Each phase installs its package-installs packages first (squashed and mapped by diskimage-builder's
tools at plan time, so they are in the key) and removes its uninstalls last, which is where the
package-installs element's own scripts would do it. Element `bin/` commands are on PATH while the
phases run instead of being installed into /usr/local/bin: the image keeps no build tools.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..elements import CHROOT_PHASES, FINAL_PHASES, dib_root, dir_digest
from ..errors import BuildError, CommandError
from ..host.chroot import chroot_argv, chroot_session
from .base import StageContext, StageKind
from .packages import APT, apt_install_argv

HOOKS = "/tmp/in_target.d"
PATH = f"{HOOKS}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Elements whose in-chroot scripts distonet does itself (they would need Python in the image).
DONE_HERE = {"package-installs", "install-bin"}


def dib_version() -> str:
    from diskimage_builder.version import version_info
    return version_info.version_string()


def assemble(hooks: Path, elements: list[tuple[str, Path]]) -> None:
    """diskimage-builder's generate_hooks: every element's directories merged into one tree (a
    script name used by two elements is an error, as there), top-level files copied."""
    hooks.mkdir(parents=True)
    for name, src in elements:
        for entry in sorted(src.iterdir()):
            if entry.name in ("tests", "__pycache__") or entry.suffix == ".pyc":
                continue
            if entry.is_dir():
                if name in DONE_HERE and entry.name != "bin":
                    continue
                dest = hooks / entry.name
                dest.mkdir(exist_ok=True)
                for item in sorted(entry.iterdir()):
                    if (dest / item.name).exists() or (dest / item.name).is_symlink():
                        raise BuildError(f"elements: two elements have {entry.name}/{item.name} "
                                         f"(the second is {name}, {src})")
                    if item.is_dir() and not item.is_symlink():
                        shutil.copytree(item, dest / item.name, symlinks=True)
                    else:
                        shutil.copy2(item, dest / item.name, follow_symlinks=False)
            else:
                shutil.copy2(entry, hooks / entry.name, follow_symlinks=False)
    shutil.copy2(dib_root() / "lib" / "dib-run-parts", hooks / "dib-run-parts")


def failed_script(output: str, phase: str) -> str:
    """The script dib-run-parts was running when it stopped, from its 'Running' lines."""
    running = [line.split("Running ", 1)[1].strip() for line in output.splitlines() if "Running /" in line]
    return running[-1].removeprefix(f"{HOOKS}/") if running else f"{phase}.d"


class Elements(StageKind):
    kind = "elements"
    doc = "diskimage-builder elements: pre-install, install, post-install"
    order = 30
    version = 1
    phases: tuple[str, ...] = CHROOT_PHASES

    @classmethod
    def instances(cls, recipe, facts):
        el = facts.elements
        phases = [p for p in el.get("phases", ()) if p in cls.phases]
        if phases:
            yield cls.kind, {"elements": [{"name": e["name"], "digest": e["digest"]} for e in el["elements"]],
                             "env": dict(el["env"]), "phases": phases,
                             "packages": {p: el["packages"][p] for p in phases if p in el["packages"]},
                             "diskimage-builder": dib_version()}

    @classmethod
    def make(cls, ctx: StageContext) -> dict:
        elements = []
        for e in ctx.inputs["elements"]:
            src = Path(ctx.host.sources[f"element:{e['name']}"])
            if dir_digest(src) != e["digest"]:
                raise BuildError(f"element {e['name']} ({src}) changed since the build was planned",
                                 hint="run the build again")
            elements.append((e["name"], src))
        merged = ctx.mount_for_writing()
        hooks = merged / HOOKS.lstrip("/")
        env = {**ctx.inputs["env"], "PATH": PATH, "HOME": "/root"}
        if ctx.host.proxy:
            env.update(http_proxy=ctx.host.proxy, https_proxy=ctx.host.proxy)
        ran = []
        with chroot_session(ctx.ledger, merged, ctx.host.apt_archives):
            try:
                assemble(hooks, elements)
                for phase in ctx.inputs["phases"]:
                    packages = ctx.inputs["packages"].get(phase, {})
                    if packages.get("install"):
                        ctx.runner(chroot_argv(merged, apt_install_argv(list(packages["install"]), ctx.host.proxy)))
                    if (hooks / f"{phase}.d").is_dir():
                        _run_parts(ctx, merged, phase, env)
                    if packages.get("uninstall"):
                        ctx.runner(chroot_argv(merged, [*APT, "remove", "--", *packages["uninstall"]]))
                    ran.append(phase)
            finally:
                shutil.rmtree(hooks, ignore_errors=True)
        return {"elements": [e["name"] for e in ctx.inputs["elements"]], "phases": ran}


def _run_parts(ctx: StageContext, merged: Path, phase: str, env: dict) -> None:
    try:
        ctx.runner(chroot_argv(merged, [f"{HOOKS}/dib-run-parts", f"{HOOKS}/{phase}.d"], env))
    except CommandError as exc:
        raise exc.failed(f"element script {failed_script(str(exc), phase)}") from None


class ElementsFinalise(Elements):
    kind = "elements.finalise"
    doc = "diskimage-builder elements: finalise"
    order = 65
    phases = FINAL_PHASES
