"""packages.<layer>: apt-get install one named layer into its own overlayfs upper dir.
The kernel layer comes first (it changes rarely, so recipes that add layers reuse it)."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path


from .. import log
from ..errors import BuildError
from ..host.archive import bare_name
from ..host.chroot import chroot_argv, chroot_session
from ..reproducible import epoch_env
from .base import StageContext, StageKind

# --force-unsafe-io: dpkg skips its fsync per unpacked file (mmdebstrap does the same for its own
# run): a stage that dies half-way is thrown away whole, and the store syncs a finished one with
# one syncfs before its stamp. An option of this run: nothing of it is in the image.
APT = ["apt-get", "-y", "-q", "--no-install-recommends",
       "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
       "-o", "Dpkg::Options::=--force-unsafe-io", "-o", "APT::Keep-Downloaded-Packages=true"]

# No binary package caches: each layer would copy up ~50 MB of them, and seal drops them anyway.
# (As a file: apt ignores an empty value given with -o.)
BUILD_APT_CONF = 'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'

KERNEL_LAYER = "kernel"

# The kernel's postinst hook makes an initrd, then initramfs-tools' trigger makes it again (each
# run a full module copy and compression). INITRD=No skips the hook (and the /initrd.img links),
# the trigger finds no initrd to update, and the layer then does once what the hook would have:
# the initrd, and the links linux-update-symlinks makes when the initrd exists.
ONE_INITRD = {"INITRD": "No"}
MAKE_INITRD = ("set -e; update-initramfs -c -k all; "
               'for v in $(linux-version list); do linux-update-symlinks install "$v" "/boot/vmlinuz-$v"; done')


def apt_install_argv(packages: list[str], proxy: str | None, recommends: bool = False) -> list[str]:
    # The proxy is a command-line option: it reaches this apt run and never a file in the image.
    opts = ["-o", f"Acquire::http::Proxy={proxy}"] if proxy else []
    apt = [a if a != "--no-install-recommends" or not recommends else "--install-recommends" for a in APT]
    return [*apt, *opts, "install", "--", *packages]


def install_commands(stage: str, packages: list[str], proxy: str | None,
                     recommends: bool) -> list[tuple[list[str], dict | None]]:
    """(argv, environment) run in the chroot to install a layer: apt-get, and for the kernel
    layer with initramfs-tools the one initrd made after it."""
    install = apt_install_argv(packages, proxy, recommends)
    if stage != f"packages.{KERNEL_LAYER}" or "initramfs-tools" not in map(bare_name, packages):
        return [(install, None)]
    return [(install, ONE_INITRD), (["sh", "-c", MAKE_INITRD], None)]


def apt_purge_argv(packages: list[str]) -> list[str]:
    return [*APT, "purge", "--autoremove", "--", *packages]


class Packages(StageKind):
    kind = "packages"
    order = 10
    version = 7     # 5: SOURCE_DATE_EPOCH (a reproducible initrd); 6, 7: what is drawn at install settled

    @classmethod
    def instances(cls, recipe, facts):
        layers = [(KERNEL_LAYER, [recipe.kernel.package, *recipe.kernel.initramfs])]
        layers += [(name, list(pkgs)) for name, pkgs in recipe.packages.items() if pkgs]
        repos = [r["state"] for r in facts.repositories]
        for name, pkgs in layers:
            inputs = {"packages": sorted(set(pkgs)), "archive": facts.archive}
            if repos:  # what the extra repositories offer is part of what a layer installs
                inputs["repositories"] = repos
            rec = recipe.apt.recommends
            if rec is True or (isinstance(rec, tuple) and name in rec):
                inputs["recommends"] = True
            elif name in recipe.apt.direct_recommends:
                inputs["recommends"] = "direct"
            yield f"packages.{name}", inputs
        if facts.debs:  # local .deb files, by content
            yield "packages.local", {"debs": [{"name": d["name"], "sha256": d["sha256"]} for d in facts.debs],
                                     "archive": facts.archive}
        if recipe.apt.purge:
            yield "packages.purge", {"purge": sorted(set(recipe.apt.purge))}

    @classmethod
    def make(cls, ctx: StageContext) -> dict:
        merged = ctx.mount_for_writing()
        if "purge" in ctx.inputs:
            with chroot_session(ctx.ledger, merged, ctx.host.apt_archives):
                ctx.runner(chroot_argv(merged, apt_purge_argv(list(ctx.inputs["purge"]))))
            return {"purged": list(ctx.inputs["purge"])}
        if "debs" in ctx.inputs:
            return install_local(ctx, merged)
        packages = list(ctx.inputs["packages"])
        conf = merged / "etc/apt/apt.conf.d/00distonet-build"
        conf.write_text(BUILD_APT_CONF)
        recommends = ctx.inputs.get("recommends", False)
        added: list[str] = []
        try:
            with chroot_session(ctx.ledger, merged, ctx.host.apt_archives):
                if recommends == "direct":
                    added = direct_recommends(ctx, merged, packages)
                for argv, env in install_commands(ctx.name, packages + added, ctx.host.proxy, recommends is True):
                    ctx.runner(chroot_argv(merged, argv, env={**(env or {}), **epoch_env(ctx.host.epoch)}))
        finally:
            conf.unlink(missing_ok=True)
        settle_drawn_at_install(merged, ctx.partial / "tree", ctx.key)
        return {"packages": packages, **({"recommended": added} if added else {})}


# Names a package's maintainer script draws at random when it is installed: made from the
# stage's key instead (its content: the same stage, the same name), so that two builds give the
# same image. They are the image's defaults, shared by every machine made from it anyway; a
# diskless node's own iSCSI initiator name comes from its iscsi.initramfs (netboot).
RANDOM_AT_INSTALL = {"etc/iscsi/initiatorname.iscsi": (r"^(InitiatorName=iqn\.1993-08\.org\.debian:01:)[0-9a-f]+$", 12)}


# Secrets a maintainer script draws at install (munge's key): not the site's, useless in a
# cluster whose machines must share one, and a secret no image should carry. Removed; the
# site's comes from an overlay (docs/recipes.md). Until it does, the service that needs it is
# skipped at boot rather than failed.
SECRETS_AT_INSTALL = {"etc/munge/munge.key": "munge.service"}


def settle_drawn_at_install(merged: Path, upper: Path, key: str) -> None:
    """What this stage's maintainer scripts drew at random (found in its own upper layer)."""
    for path, unit in SECRETS_AT_INSTALL.items():
        if (upper / path).is_file() and not (upper / path).is_symlink():
            (merged / path).unlink()
            dropin = merged / "etc/systemd/system" / f"{unit}.d" / "distonet-site-secret.conf"
            dropin.parent.mkdir(parents=True, exist_ok=True)
            dropin.write_text(f"# distonet removed the /{path} drawn when the package was installed:\n"
                              f"# give the site's in an overlay. Until then {unit} does not start.\n"
                              f"[Unit]\nConditionPathExists=/{path}\n")
            log.info(f"  removed /{path}, drawn at install: the site's comes from an overlay")
    for path, (pattern, length) in RANDOM_AT_INSTALL.items():
        if not (upper / path).is_file() or (upper / path).is_symlink():
            continue                      # not made by this stage (or not a plain file)
        target = merged / path
        text = target.read_text()
        derived = hashlib.sha256(f"{key}:{path}".encode()).hexdigest()[:length]
        new = re.sub(pattern, lambda m: m.group(1) + derived, text, flags=re.MULTILINE)
        if new != text:
            mode = target.stat().st_mode & 0o7777
            target.write_text(new)
            target.chmod(mode)


def direct_recommends(ctx: StageContext, merged: Path, packages: list[str]) -> list[str]:
    """What the layer's packages recommend themselves, among what the image's apt can install
    (a pin below 0 keeps a recommendation out, as it would keep it out of apt's own choice)."""
    def apt_cache(*args: str) -> str:
        return ctx.runner(chroot_argv(merged, ["apt-cache", "-q", *args]), capture=True).stdout
    shown = apt_cache("show", "--no-all-versions", "--", *[bare_name(p) for p in packages])
    wanted = sorted({n for alts in recommends_of(shown) for n in alts})
    installable = candidates(apt_cache("policy", "--", *wanted)) if wanted else set()
    return pick_recommends(shown, installable, set(map(bare_name, packages)))


def recommends_of(shown: str) -> list[list[str]]:
    """Each Recommends item of `apt-cache show` paragraphs, as its list of alternatives."""
    from debian.deb822 import Deb822  # only here: 20 ms of every plan otherwise
    out = []
    for para in Deb822.iter_paragraphs(shown.splitlines(), use_apt_pkg=False):
        for item in para.get("Recommends", "").split(","):
            names = [bare_name(alt.strip().split(" ", 1)[0]) for alt in item.split("|") if alt.strip()]
            if names:
                out.append(names)
    return out


def candidates(policy: str) -> set[str]:
    """Names that have an installation candidate in `apt-cache policy` output."""
    found, name = set(), None
    for line in policy.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            name = line[:-1].split(":", 1)[0]
        elif name and line.strip().startswith("Candidate:") and line.split(":", 1)[1].strip() != "(none)":
            found.add(name)
    return found


def pick_recommends(shown: str, available: set[str], already: set[str]) -> list[str]:
    """For each Recommends item the first alternative that can be installed; an item with none
    is skipped, as apt skips a Recommends it cannot satisfy."""
    out: list[str] = []
    for names in recommends_of(shown):
        found = next((n for n in names if n in available), None)
        if found and found not in already and found not in out:
            out.append(found)
    return out


def install_local(ctx: StageContext, merged) -> dict:
    """apt installs local .deb files (and their dependencies from the archive) from the
    session's /run, so the files themselves never stay in the image."""
    with chroot_session(ctx.ledger, merged, ctx.host.apt_archives):
        staging = merged / "run/distonet-debs"
        staging.mkdir(parents=True, exist_ok=True)
        inside = []
        for d in ctx.inputs["debs"]:
            src = Path(ctx.host.sources[f"deb:{d['name']}"])
            if hashlib.sha256(src.read_bytes()).hexdigest() != d["sha256"]:
                raise BuildError(f"{src} changed since the build was planned", hint="run the build again")
            shutil.copyfile(src, staging / d["name"])
            inside.append(f"/run/distonet-debs/{d['name']}")
        ctx.runner(chroot_argv(merged, apt_install_argv(inside, ctx.host.proxy)))
    return {"debs": [d["name"] for d in ctx.inputs["debs"]]}
