"""Recipe → BuildPlan: the stages in order, each with its cache key, and the outputs. Pure.

A stage's key is the hash of its parent's key and of exactly what the stage reads. Stage
snapshots are stored by key under cache/stages/<key>/, so recipes that share a base share
its stages on disk, and a change in a late layer leaves the earlier keys (and snapshots) alone.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Mapping

from .outputs import REGISTRY as OUTPUTS
from .paths import Paths
from .recipe import Recipe


class StageKind(StrEnum):
    bootstrap = "bootstrap"
    packages = "packages"
    seal = "seal"


# Bump a kind's version when its implementation changes what it writes.
STAGE_VERSIONS = {StageKind.bootstrap: 1, StageKind.packages: 3, StageKind.seal: 2}

_UUID_NS = uuid.UUID("6f1f8a52-5d1e-4c1b-9a43-0d15f0a7e001")


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Stage:
    name: str                 # bootstrap, packages.<layer>, seal
    kind: StageKind
    key: str
    parent: "Stage | None"
    inputs: Mapping[str, Any] = field(repr=False)

    def ancestry(self) -> list["Stage"]:
        """This stage and its ancestors, nearest first (the overlayfs lowerdir order)."""
        out, s = [], self
        while s is not None:
            out.append(s)
            s = s.parent
        return out


@dataclass(frozen=True)
class OutputStep:
    name: str
    options: Any
    needs: tuple[str, ...]
    key: str


@dataclass(frozen=True)
class BuildPlan:
    recipe: Recipe
    paths: Paths
    mirror: str
    archive: str
    stages: tuple[Stage, ...]
    outputs: tuple[OutputStep, ...]
    root_uuid: str
    esp_id: str

    @property
    def sealed(self) -> Stage:
        return self.stages[-1]

    @property
    def out_dir(self) -> Path:
        return self.paths.recipe_output(self.recipe.name)

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def stage_dir(self, stage: Stage) -> Path:
        return self.paths.stages / stage.key[:32]

    def tree(self, stage: Stage) -> Path:
        return self.stage_dir(stage) / "tree"

    def stamp(self, stage: Stage) -> Path:
        return self.stage_dir(stage) / "stamp.json"

    def output(self, name: str) -> OutputStep:
        return next(o for o in self.outputs if o.name == name)


def _stage(name: str, kind: StageKind, parent: Stage | None, inputs: dict) -> Stage:
    key = digest({"kind": kind, "version": STAGE_VERSIONS[kind],
                  "parent": parent.key if parent else None, "inputs": inputs})
    return Stage(name, kind, key, parent, inputs)


def make_plan(recipe: Recipe, paths: Paths, *, mirror: str, archive: str) -> BuildPlan:
    """`mirror` is the resolved archive URL, `archive` a digest of its Release file (the archive state)."""
    dist = recipe.distribution
    stages: list[Stage] = []
    boot = _stage("bootstrap", StageKind.bootstrap, None, {
        "suite": dist.suite, "architecture": dist.architecture, "components": list(dist.components),
        "mirror": mirror, "tool": dist.bootstrap, "variant": dist.variant, "archive": archive})
    stages.append(boot)
    # The kernel is its own first layer: it changes rarely, so recipes that add layers reuse it.
    layers = [("kernel", [recipe.kernel.package, *recipe.kernel.initramfs])]
    layers += [(name, list(pkgs)) for name, pkgs in recipe.packages.items() if pkgs]
    parent = boot
    for name, pkgs in layers:
        parent = _stage(f"packages.{name}", StageKind.packages, parent,
                        {"packages": sorted(set(pkgs)), "archive": archive})
        stages.append(parent)
    seal_inputs = {"hostname": recipe.hostname, "access": recipe.access.model_dump(mode="json"),
                   "network": recipe.network.model_dump(mode="json")}
    # The root filesystem's UUID is part of what seal writes (fstab), derived from what it depends on.
    root_uuid = str(uuid.uuid5(_UUID_NS, digest({"parent": parent.key, **seal_inputs})))
    seal_inputs["root_uuid"] = root_uuid
    stages.append(_stage("seal", StageKind.seal, parent, seal_inputs))
    esp_id = root_uuid.replace("-", "")[:8].upper()

    wanted = dict(recipe.enabled_outputs())
    # An output needs others (qcow2 needs disk, disk needs rootfs): bring them in with defaults.
    changed = True
    while changed:
        changed = False
        for name in list(wanted):
            for need in OUTPUTS[name].needs:
                if need not in wanted:
                    wanted[need] = OUTPUTS[need].Options()
                    changed = True
    order = _topo(wanted)
    seal = stages[-1]
    steps = []
    keys: dict[str, str] = {}
    for name in order:
        cls = OUTPUTS[name]
        key = digest({"seal": seal.key, "output": name, "version": cls.version,
                      "options": wanted[name].model_dump(mode="json"),
                      "reads": {r: getattr(recipe, r).model_dump(mode="json") for r in cls.reads},
                      "needs": {n: keys[n] for n in cls.needs}})
        keys[name] = key
        steps.append(OutputStep(name, wanted[name], cls.needs, key))
    return BuildPlan(recipe, paths, mirror, archive, tuple(stages), tuple(steps), root_uuid,
                     f"{esp_id[:4]}-{esp_id[4:]}")


def _topo(wanted: dict) -> list[str]:
    done: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        for need in OUTPUTS[name].needs:
            visit(need)
        done.append(name)

    for name in sorted(wanted):
        visit(name)
    return done
