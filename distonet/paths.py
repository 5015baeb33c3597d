"""Where things live: recipes (a search path), stage snapshots in cache/, products in output/."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import PROJECT_ROOT


SUFFIXES = (".yaml", ".yml")


def recipe_name(arg: str) -> str:
    """`minimal`, `minimal.yaml` and `recipes/minimal.yaml` all name the recipe `minimal`."""
    name = Path(arg).name
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _search_path(root: Path) -> tuple[Path, ...]:
    """DISTONET_RECIPES: directories separated by ':' searched in order; the shipped recipes are
    always last, so a site's own recipe directory can extend them."""
    shipped = root / "recipes"
    given = [Path(p) for p in os.environ.get("DISTONET_RECIPES", "").split(":") if p]
    return tuple(dict.fromkeys([*given, shipped]))


@dataclass(frozen=True)
class Paths:
    recipes: Path                         # the first directory of the search path
    cache: Path
    output: Path
    search: tuple[Path, ...] = field(default=())

    def __post_init__(self):
        if not self.search:
            object.__setattr__(self, "search", (Path(self.recipes),))

    @classmethod
    def default(cls, root: Path = PROJECT_ROOT) -> "Paths":
        # Environment overrides let tests and CI point outputs elsewhere while sharing the cache.
        # Made absolute: tools run in the tree (chpasswd --root) refuse a relative path.
        search = tuple(p.absolute() for p in _search_path(root))
        return cls(recipes=search[0], search=search,
                   cache=Path(os.environ.get("DISTONET_CACHE", root / "cache")).absolute(),
                   output=Path(os.environ.get("DISTONET_OUTPUT", root / "output")).absolute())

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

    @property
    def overlay_dirs(self) -> tuple[Path, ...]:
        """overlays/ beside each recipe directory, in the search order."""
        return tuple(dict.fromkeys(d.parent / "overlays" for d in self.search))

    @property
    def hook_dirs(self) -> tuple[Path, ...]:
        """hooks/chroot/ beside each recipe directory (hooks/initramfs/ is the initrd's)."""
        return tuple(dict.fromkeys(d.parent / "hooks" / "chroot" for d in self.search))

    @property
    def initramfs_dirs(self) -> tuple[Path, ...]:
        """hooks/initramfs/ beside each recipe directory, then distonet's own (union, netroot)."""
        return tuple(dict.fromkeys([*(d.parent / "hooks" / "initramfs" for d in self.search),
                                    PROJECT_ROOT / "hooks" / "initramfs"]))

    @property
    def element_dirs(self) -> tuple[Path, ...]:
        """elements/ beside each recipe directory: a site's own diskimage-builder elements."""
        return tuple(dict.fromkeys(d.parent / "elements" for d in self.search))

    @property
    def deb_dirs(self) -> tuple[Path, ...]:
        return tuple(dict.fromkeys(d.parent / "debs" for d in self.search))

    @property
    def key_dirs(self) -> tuple[Path, ...]:
        return tuple(dict.fromkeys(d.parent / "keys" for d in self.search))

    @property
    def site_dirs(self) -> tuple[Path, ...]:
        return tuple(dict.fromkeys(d.parent / "sites" for d in self.search))

    @property
    def secrets(self) -> Path:
        """secrets/ beside the first recipe directory: CHAP credentials (mode 0600, never in git)."""
        return Path(os.environ.get("DISTONET_SECRETS", Path(self.recipes).parent / "secrets"))

    def recipe_output(self, recipe: str) -> Path:
        return self.output / recipe
