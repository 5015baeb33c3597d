"""Where things live: recipes in the project, stage snapshots in cache/, products in output/."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import PROJECT_ROOT


@dataclass(frozen=True)
class Paths:
    recipes: Path
    cache: Path
    output: Path

    @classmethod
    def default(cls, root: Path = PROJECT_ROOT) -> "Paths":
        # Environment overrides let tests and CI point outputs elsewhere while sharing the cache.
        return cls(recipes=Path(os.environ.get("DISTONET_RECIPES", root / "recipes")),
                   cache=Path(os.environ.get("DISTONET_CACHE", root / "cache")),
                   output=Path(os.environ.get("DISTONET_OUTPUT", root / "output")))

    @property
    def stages(self) -> Path:
        return self.cache / "stages"

    @property
    def ledger(self) -> Path:
        return self.cache / "ledger"

    @property
    def apt_archives(self) -> Path:
        return self.cache / "apt-archives"

    @property
    def work(self) -> Path:
        return self.cache / "work"

    def recipe_output(self, recipe: str) -> Path:
        return self.output / recipe
