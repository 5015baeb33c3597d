"""What every output kind is (kiwi's subformat registry idea, one module per kind).

An Output subclass declares its `name` (the key under `outputs:` in a recipe), an `Options`
model, the outputs it `needs` (their artifacts arrive in `ctx.inputs`, never by literal file
names), the recipe sections it `reads`, whether it `needs_tree` (the sealed tree mounted
read-only) and the host `tools` it runs. `make(ctx)` writes its files into `ctx.out` and returns
their artifacts; the pipeline makes the files appear all at once with the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from ..host.ledger import Ledger
    from ..host.run import Runner
    from ..manifest import Artifact


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


REGISTRY: dict[str, type["Output"]] = {}


@dataclass(frozen=True)
class BuildFacts:
    """What an output may know about the build besides its options and the sections it reads."""
    recipe: str
    root_uuid: str
    esp_id: str
    cmdline: tuple[str, ...]   # the full kernel command line the image boots with
    epoch: int = 0             # SOURCE_DATE_EPOCH of the build (reproducible.py); 0: unknown
    # the site's side of netboot: {"hosts": [inventory hosts of this recipe], "inventory": file,
    # "chap": {file, digest} or None} (inventory.py, chap.py)
    netboot: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class OutputContext:
    options: Any
    reads: Mapping[str, Any]                 # recipe sections named in `reads`
    build: BuildFacts
    inputs: Mapping[str, list["Artifact"]]   # artifacts of the outputs in `needs`, with paths resolved
    out: Path                                # where to write (files appear with the manifest)
    work: Path                               # scratch space, removed afterwards
    tree: Path | None                        # the sealed tree, read-only; None unless needs_tree
    ledger: "Ledger"
    runner: "Runner"
    cache: Path | None = None                # for what an output derives from content and keeps by it

    def input(self, need: str, kind: str | None = None) -> Path:
        """The file of the one artifact (of `kind`) a needed output made."""
        arts = [a for a in self.inputs[need] if kind is None or a.kind == kind]
        if len(arts) != 1:
            raise KeyError(f"{need}: expected one artifact{f' of kind {kind}' if kind else ''}, got {len(arts)}")
        return Path(arts[0].path)


class Output:
    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = Options
    needs: ClassVar[tuple[str, ...]] = ()
    reads: ClassVar[tuple[str, ...]] = ()
    needs_tree: ClassVar[bool] = False
    tools: ClassVar[tuple[str, ...]] = ()
    # Bump when the way this output is made changes, so cached artifacts are remade.
    version: ClassVar[int] = 1

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        name = cls.__dict__.get("name")
        if name is None:
            return  # an intermediate base
        if name in REGISTRY:
            raise TypeError(f"output kind {name!r} registered twice ({REGISTRY[name]} and {cls})")
        REGISTRY[name] = cls

    @classmethod
    def content_digest(cls) -> str | None:
        """A digest of the files (templates) the output renders from, for its key; None if none."""
        return None

    @classmethod
    def files(cls, options) -> list[str]:
        """Files this output writes, relative to the recipe's output directory."""
        raise NotImplementedError

    @classmethod
    def make(cls, ctx: OutputContext) -> list["Artifact"]:
        raise NotImplementedError
