"""What every stage kind is: a registered class that says where it sits in the chain, which
instances a recipe asks for and with exactly what inputs, and how to make one from those inputs.

A stage's `make` receives a StageContext and nothing else: `ctx.inputs` is exactly what its key
hashes, so a stage cannot read a recipe field its key ignores (a stale-cache bug by
construction). `ctx.host` carries the build host's facts that do not change the content (the
mirror URL, a proxy, the cache paths); they are recorded in the stamp, not in the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Mapping

if TYPE_CHECKING:
    from ..host.ledger import Ledger
    from ..host.run import Runner
    from ..store import StageStore

REGISTRY: dict[str, type["StageKind"]] = {}


@dataclass(frozen=True)
class HostFacts:
    """Facts of the build host a stage may use without them entering its key."""
    mirror: str                                   # where packages come from (content: archive state)
    cache: Path                                   # cache root (apt-archives, apt-lists)
    work: Path                                    # where merged trees are mounted
    proxy: str | None = None                      # build-time apt proxy; never left in the image
    security_mirror: str | None = None
    epoch: int = 0                                # SOURCE_DATE_EPOCH (reproducible.py)
    # Where project files are (overlay:<name> → its directory): their content is in the key.
    sources: Mapping[str, Path] = field(default_factory=dict)

    @property
    def apt_archives(self) -> Path:
        return self.cache / "apt-archives"


@dataclass
class StageContext:
    name: str
    key: str
    inputs: Mapping[str, Any]
    parents: tuple[str, ...]      # keys of the layers below, nearest first
    partial: Path
    host: HostFacts
    store: "StageStore"
    ledger: "Ledger"
    runner: "Runner"

    def mount_for_writing(self) -> Path:
        """The tree this stage works on: its parents below, its own upper dir on top."""
        upper, work = self.partial / "tree", self.partial / "work"
        upper.mkdir()
        work.mkdir()
        merged = self.host.work / f"{self.key[:16]}-{os.getpid()}"
        return self.store.mount(self.ledger, self.parents, merged, upper, work)


class StageKind:
    kind: ClassVar[str]
    order: ClassVar[int]               # position in the chain (bootstrap 0 … seal 100)
    version: ClassVar[int] = 1         # bump when what the kind writes changes
    doc: ClassVar[str] = ""            # one line for `doit list`
    tools: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "kind" not in cls.__dict__:
            return  # an intermediate base
        if cls.kind in REGISTRY:
            raise TypeError(f"stage kind {cls.kind!r} registered twice ({REGISTRY[cls.kind]} and {cls})")
        REGISTRY[cls.kind] = cls

    @classmethod
    def instances(cls, recipe, facts) -> Iterable[tuple[str, dict]]:
        """(stage name, inputs) for each stage of this kind the recipe asks for, in order."""
        raise NotImplementedError

    @classmethod
    def complete(cls, inputs: dict, parent_key: str | None) -> dict:
        """Inputs derived from the parent (seal's root UUID); the default adds nothing."""
        return inputs

    @classmethod
    def host_tools(cls, inputs: Mapping[str, Any]) -> tuple[str, ...]:
        return cls.tools

    @classmethod
    def make(cls, ctx: StageContext) -> dict:
        """Build into ctx.partial; return extra stamp fields."""
        raise NotImplementedError


def chain() -> list[type[StageKind]]:
    return sorted(REGISTRY.values(), key=lambda k: k.order)


def frozen(inputs: dict) -> Mapping[str, Any]:
    return MappingProxyType(dict(inputs))
