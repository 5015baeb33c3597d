"""Artifact kinds, one module each, found through a registry (kiwi's subformat registry idea).

An Output subclass declares its `name` (the key under `outputs:` in a recipe), an `Options`
model for its per-output options, the outputs it `needs`, and `make()`, which writes its files
atomically and returns the artifacts for the manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from ..manifest import Artifact
    from ..plan import BuildPlan


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


REGISTRY: dict[str, type["Output"]] = {}


class Output:
    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = Options
    needs: ClassVar[tuple[str, ...]] = ()
    # Recipe sections (besides the sealed tree and the options) that change what this output writes.
    reads: ClassVar[tuple[str, ...]] = ()
    # Bump when the way this output is made changes, so cached artifacts are remade.
    version: ClassVar[int] = 1

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        REGISTRY[cls.name] = cls

    def __init__(self, plan: "BuildPlan", options: BaseModel):
        self.plan = plan
        self.options = options

    def files(self) -> list[str]:
        """Files this output writes, relative to the recipe's output directory."""
        raise NotImplementedError

    def make(self, tree: Path, ledger, runner) -> list["Artifact"]:
        """Write the files from the sealed `tree` (mounted read-only); return the artifacts."""
        raise NotImplementedError


def load_all() -> dict[str, type[Output]]:
    # Importing registers; kept explicit so the registry is complete before recipes are validated.
    from . import disk, kernel, qcow2, rootfs  # noqa: F401
    return REGISTRY

