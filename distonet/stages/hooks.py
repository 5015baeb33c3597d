"""hooks.<phase>: a recipe's scripts, run in documented phases (diskimage-builder's element
phases, kept small):

    phase          runs                         where in the chain
    pre-install    inside the chroot            after bootstrap, before the package layers
    post-install   inside the chroot            after the package layers, before the overlays
    finalise       inside the chroot            after the overlays, before seal
    outside        on the build host, with the  after finalise (for what needs host tools);
                   tree's path as $1 and         it must write only below $TARGET_ROOT
                   $TARGET_ROOT

A hook set is `hooks/chroot/<name>/<phase>/NN-script` (beside any recipe directory); a recipe
names its sets in `hooks:`. Scripts run in name order across the sets, in the order the recipe
names them, with the recipe's variables in their environment (DISTONET_<NAME>, JSON for lists
and maps; DISTONET_RECIPE, DISTONET_SUITE, DISTONET_ARCH), daemons kept from starting
(policy-rc.d), output to the build log. A script's content is in its stage's key.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from ..errors import BuildError, CommandError
from ..host.chroot import chroot_argv, chroot_session
from .base import StageContext, StageKind

PHASES = ("pre-install", "post-install", "finalise", "outside")


def hook_env(variables: dict) -> dict[str, str]:
    env = {}
    for name, value in variables.items():
        key = f"DISTONET_{name.upper()}"
        env[key] = value if isinstance(value, str) else json.dumps(value)
    return env


class Hooks(StageKind):
    phase: str

    @classmethod
    def instances(cls, recipe, facts):
        scripts = [s for s in facts.hooks if s["phase"] == cls.phase]
        if scripts:
            # The script's place (dir) is not content: the key has its digest.
            yield f"hooks.{cls.phase}", {"phase": cls.phase, "env": hook_env(facts.hook_vars),
                                         "scripts": [{k: v for k, v in s.items() if k != "dir"} for s in scripts]}

    @classmethod
    def make(cls, ctx: StageContext) -> dict:
        merged = ctx.mount_for_writing()
        ran = []
        if cls.phase == "outside":
            for s in ctx.inputs["scripts"]:
                _run(ctx, s, [str(_source(ctx, s)), str(merged)],
                     {**ctx.inputs["env"], "TARGET_ROOT": str(merged)})
                ran.append(f"{s['set']}/{s['phase']}/{s['name']}")
            return {"hooks": ran}
        with chroot_session(ctx.ledger, merged, ctx.host.apt_archives):
            staging = merged / "run" / "distonet-hooks"  # /run is the session's tmpfs: nothing stays
            staging.mkdir(parents=True, exist_ok=True)
            for s in ctx.inputs["scripts"]:
                inside = staging / f"{s['set']}-{s['name']}"
                shutil.copyfile(_source(ctx, s), inside)
                inside.chmod(0o755)
                env = dict(ctx.inputs["env"])
                if ctx.host.proxy:
                    env.update(http_proxy=ctx.host.proxy, https_proxy=ctx.host.proxy)
                _run(ctx, s, chroot_argv(merged, [f"/run/distonet-hooks/{inside.name}"], env), None)
                ran.append(f"{s['set']}/{s['phase']}/{s['name']}")
        return {"hooks": ran}


def _source(ctx: StageContext, s: dict) -> Path:
    path = Path(ctx.host.sources[f"hooks:{s['set']}"]) / s["phase"] / s["name"]
    if hashlib.sha256(path.read_bytes()).hexdigest() != s["sha256"]:
        raise BuildError(f"hook {path} changed since the build was planned", hint="run the build again")
    return path


def _run(ctx: StageContext, s: dict, argv: list[str], env: dict | None) -> None:
    try:
        ctx.runner(argv, env=env)
    except CommandError as exc:
        raise exc.failed(f"hook {s['set']}/{s['phase']}/{s['name']}") from None


class PreInstall(Hooks):
    kind, phase, order = "hooks.pre-install", "pre-install", 5
    doc = "the hooks' pre-install scripts"


class PostInstall(Hooks):
    kind, phase, order = "hooks.post-install", "post-install", 20
    doc = "the hooks' post-install scripts"


class Finalise(Hooks):
    kind, phase, order = "hooks.finalise", "finalise", 60
    doc = "the hooks' finalise scripts"


class Outside(Hooks):
    kind, phase, order = "hooks.outside", "outside", 70
    doc = "the hooks' scripts run on the host"
