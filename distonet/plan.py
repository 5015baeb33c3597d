"""Recipe + host facts → BuildPlan: the stages in order, each with its cache key, and the
outputs. Pure: nothing here touches the host.

A stage's key is the hash of its kind, the kind's version, its parent's key and exactly its
inputs (which is all its `make` ever sees). Snapshots are stored by key, so recipes that share a
base share its stages on disk, and a change in a late layer leaves earlier keys alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .digest import digest
from .errors import DistonetError
from .grub import kernel_cmdline
from .keyed import Chained, Keyed
from .outputs import REGISTRY as OUTPUTS
from .outputs.base import BuildFacts
from .paths import Paths
from .recipe import Recipe
from .stages import REGISTRY as STAGES, chain
from .stages.base import frozen


@dataclass(frozen=True)
class PlanFacts:
    """What the plan needs from the host, gathered by pipeline.py (the only impure part)."""
    mirror: str
    archive: str                  # digest of the suites' InRelease files: the archive state
    epoch: int = 0                # SOURCE_DATE_EPOCH: the archive state's date (reproducible.py)
    security_mirror: str | None = None
    proxy: str | None = None
    updates: bool = True
    security: bool = True
    # overlay name → {"dir": its directory, "digest": content digest, "vars": the values it reads}
    overlays: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    site: str | None = None
    # extra repositories: fields, key digest and path, InRelease state, in the recipe's order
    repositories: tuple[Mapping[str, Any], ...] = ()
    hooks: tuple[Mapping[str, str], ...] = ()      # {set, phase, name, sha256, dir}, in run order
    debs: tuple[Mapping[str, str], ...] = ()       # {name, sha256, path}: apt.debs found in debs/
    hook_vars: Mapping[str, Any] = field(default_factory=dict)
    # diskimage-builder elements: {elements: [{name, dir, digest}], env, packages, phases} (elements.py)
    elements: Mapping[str, Any] = field(default_factory=dict)
    # initramfs hook sets: {name, dir, files: [{path, sha256}]} (stages/initramfs.py)
    initramfs: tuple[Mapping[str, Any], ...] = ()
    # the site's side of netboot: inventory hosts of this recipe, CHAP credentials' digest
    netboot: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage(Chained):
    name: str                 # bootstrap, packages.<layer>, seal
    kind: str
    key: str
    parent: "Stage | None"
    inputs: Mapping[str, Any] = field(repr=False)

    @property
    def doc(self) -> str:
        return STAGES[self.kind].doc or self.kind


@dataclass(frozen=True)
class OutputStep(Keyed):
    name: str
    options: Any
    needs: tuple[str, ...]
    key: str

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(OUTPUTS[self.name].files(self.options))


@dataclass(frozen=True)
class BuildPlan:
    recipe: Recipe
    source: Path                  # the recipe file
    paths: Paths
    facts: PlanFacts
    stages: tuple[Stage, ...]
    outputs: tuple[OutputStep, ...]
    build: BuildFacts

    @property
    def sealed(self) -> Stage:
        return self.stages[-1]

    @property
    def name(self) -> str:
        return self.recipe.name

    @property
    def out_dir(self) -> Path:
        return self.paths.recipe_output(self.recipe.name)

    @property
    def root_uuid(self) -> str:
        return self.build.root_uuid

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise DistonetError(f"{self.name}: no stage named {name!r}; stages: {', '.join(s.name for s in self.stages)}")

    def output(self, name: str) -> OutputStep:
        for o in self.outputs:
            if o.name == name:
                return o
        raise DistonetError(f"{self.name}: no output named {name!r}; outputs: {', '.join(o.name for o in self.outputs)}")

    @property
    def build_id(self) -> str:
        """Names the content: the sealed tree, every output's key and the resolved recipe."""
        return (self.sealed.key[:16] + "-"
                + digest({"outputs": [o.key for o in self.outputs], "recipe": self.recipe.resolved()})[:16])


def _stage(name: str, kind: str, parent: Stage | None, inputs: dict) -> Stage:
    key = digest({"kind": kind, "version": STAGES[kind].version,
                  "parent": parent.key if parent else None, "inputs": inputs})
    return Stage(name, kind, key, parent, frozen(inputs))


def plan_stages(recipe: Recipe, facts: PlanFacts) -> tuple[Stage, ...]:
    stages: list[Stage] = []
    parent = None
    for kind in chain():
        for name, inputs in kind.instances(recipe, facts):
            inputs = kind.complete(inputs, parent.key if parent else None)
            parent = _stage(name, kind.kind, parent, inputs)
            stages.append(parent)
    return tuple(stages)


def wanted_outputs(recipe: Recipe) -> dict[str, Any]:
    """The recipe's outputs plus those they need (qcow2 needs disk, disk needs rootfs), with defaults."""
    wanted = dict(recipe.enabled_outputs())
    todo = list(wanted)
    while todo:
        for need in OUTPUTS[todo.pop()].needs:
            if need not in wanted:
                wanted[need] = OUTPUTS[need].Options()
                todo.append(need)
    return wanted


def _section(recipe: Recipe, name: str):
    value = getattr(recipe, name)
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def make_plan(recipe: Recipe, paths: Paths, facts: PlanFacts, source: Path | None = None) -> BuildPlan:
    stages = plan_stages(recipe, facts)
    seal = stages[-1]
    root_uuid = seal.inputs["root_uuid"]
    esp = root_uuid.replace("-", "")[:8].upper()
    build = BuildFacts(recipe=recipe.name, root_uuid=root_uuid, esp_id=f"{esp[:4]}-{esp[4:]}", epoch=facts.epoch,
                       cmdline=tuple(kernel_cmdline(root_uuid, recipe.boot.cmdline, recipe.boot.console)),
                       netboot=facts.netboot)
    wanted = wanted_outputs(recipe)
    steps, keys = [], {}
    for name in _topo(wanted):
        cls = OUTPUTS[name]
        content = cls.content_digest()
        key = digest({"seal": seal.key, "output": name, "version": cls.version,
                      "options": wanted[name].model_dump(mode="json"),
                      "reads": {r: _section(recipe, r) for r in cls.reads},
                      # the boot menu shows the recipe's name
                      "title": build.recipe if "boot" in cls.reads else None,
                      "needs": {n: keys[n] for n in cls.needs},
                      # the inventory's hosts and the CHAP credentials (by digest) shape the netboot files
                      "site": facts.netboot if "netboot" in cls.reads else None,
                      # what the output is made from besides the tree: its templates, say
                      **({"content": content} if content else {})})
        keys[name] = key
        steps.append(OutputStep(name, wanted[name], cls.needs, key))
    return BuildPlan(recipe, source or paths.recipes / f"{recipe.name}.yaml", paths, facts,
                     stages, tuple(steps), build)


def _topo(wanted: dict) -> list[str]:
    done: list[str] = []

    def visit(name: str) -> None:
        if name not in done:
            for need in OUTPUTS[name].needs:
                visit(need)
            done.append(name)

    for name in sorted(wanted):
        visit(name)
    return done
