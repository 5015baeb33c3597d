"""repositories: extra apt repositories, signed, and apt pins, added before the package layers.

Each becomes `/etc/apt/sources.list.d/distonet-<name>.sources` (deb822) with its key in
`/etc/apt/keyrings/distonet-<name>.<asc|gpg>` named by `Signed-By`, and apt reads only that
source's lists (the main archive's lists stay those of the archive state in the keys). Keyed
by the repositories' fields, their keys' content and their InRelease digests.

A `file://` repository is bound read-only into every later package chroot at its own path,
and is left disabled (`Enabled: no`) in the image, where that path does not exist.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from ..errors import BuildError
from ..host.chroot import chroot_argv, chroot_session
from .base import StageContext, StageKind

SOURCES_DIR = "etc/apt/sources.list.d"
KEYRINGS = "etc/apt/keyrings"


def sources_text(repo: dict, key_name: str, enabled: bool = True) -> str:
    return ("# made by distonet from the recipe's repositories:\n"
            f"Types: deb\nURIs: {repo['uri']}\nSuites: {' '.join(repo['suites'])}\n"
            f"Components: {' '.join(repo['components'])}\nSigned-By: /{KEYRINGS}/{key_name}\n"
            + ("" if enabled else "Enabled: no\n"))


def update_argv(root: Path, name: str) -> list[str]:
    """apt-get update of this one source: the archive's lists are not refreshed."""
    return chroot_argv(root, ["apt-get", "-q", "update",
                              "-o", f"Dir::Etc::SourceList=/{SOURCES_DIR}/distonet-{name}.sources",
                              "-o", "Dir::Etc::SourceParts=-", "-o", "APT::Get::List-Cleanup=0"])


class Repositories(StageKind):
    kind = "repositories"
    doc = "extra apt repositories, their keys and apt pins"
    order = 8
    version = 1

    @classmethod
    def instances(cls, recipe, facts):
        pins = [p.model_dump(mode="json") for p in recipe.apt.pins]
        if facts.repositories or pins:
            yield "repositories", {"repos": [{k: v for k, v in r.items() if k != "key_path"}
                                             for r in facts.repositories], "pins": pins}

    @classmethod
    def make(cls, ctx: StageContext) -> dict:
        merged = ctx.mount_for_writing()
        (merged / SOURCES_DIR).mkdir(parents=True, exist_ok=True)
        (merged / KEYRINGS).mkdir(parents=True, exist_ok=True)
        for repo in ctx.inputs["repos"]:
            src = Path(ctx.host.sources[f"key:{repo['name']}"])
            if hashlib.sha256(src.read_bytes()).hexdigest() != repo["key_sha256"]:
                raise BuildError(f"{src} changed since the build was planned", hint="run the build again")
            key_name = f"distonet-{repo['name']}{src.suffix}"
            shutil.copyfile(src, merged / KEYRINGS / key_name)
            (merged / KEYRINGS / key_name).chmod(0o644)
            (merged / SOURCES_DIR / f"distonet-{repo['name']}.sources").write_text(sources_text(repo, key_name))
        if ctx.inputs["pins"]:
            prefs = merged / "etc/apt/preferences.d"
            prefs.mkdir(parents=True, exist_ok=True)
            (prefs / "distonet.pref").write_text(preferences_text(ctx.inputs["pins"]))
        if ctx.inputs["repos"]:
            with chroot_session(ctx.ledger, merged, ctx.host.apt_archives):
                for repo in ctx.inputs["repos"]:
                    ctx.runner(update_argv(merged, repo["name"]))
        return {"repositories": [r["name"] for r in ctx.inputs["repos"]], "pins": len(ctx.inputs["pins"])}


def preferences_text(pins: list[dict]) -> str:
    """apt_preferences(5) stanzas, in the recipe's order."""
    stanzas = [f"Package: {p['packages']}\nPin: {p['pin']}\nPin-Priority: {p['priority']}\n" for p in pins]
    return "# made by distonet from the recipe's apt.pins\n\n" + "\n".join(stanzas)
