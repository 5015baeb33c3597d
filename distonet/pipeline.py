"""Recipe + host facts → BuildPlan. The only impure step before doit runs: it reads the build
host's apt configuration and fetches the archive's InRelease files (about 0.1 s each; offline,
the copies seen last), so that package stages are keyed on the archive's state."""

from __future__ import annotations

import contextlib
import functools
import os

import difflib
import hashlib

import yaml

from . import log, render
from .digest import digest
from .errors import DistonetError, RecipeError
from .host.archive import check_error, missing_packages, package_names
from .host.apt import archive_epoch, archive_state, default_mirror, default_security_mirror
from .paths import Paths
from .elements import element_facts
from .enums import NetbootMode
from .plan import BuildPlan, PlanFacts, make_plan
from .recipe import Recipe, load_recipe, recipe_name, recipe_path

NO_SECURITY = ("sid", "unstable", "experimental")
OFFLINE = "offline"  # the archive state when it is unknown (listing and cleaning only)


def plan_facts(recipe: Recipe, paths: Paths, *, offline_ok: bool = False) -> PlanFacts:
    dist = recipe.distribution
    mirror = (dist.mirror or default_mirror()).rstrip("/")
    updates = dist.updates and dist.suite not in NO_SECURITY
    security = dist.security and dist.suite not in NO_SECURITY
    sec_mirror = None
    if security:
        sec_mirror = (dist.security_mirror or default_security_mirror() or "").rstrip("/") or None
        if sec_mirror is None:
            raise RecipeError(f"{recipe.name}: distribution.security: the build host's apt sources name no "
                              "security archive", hint="set distribution.security_mirror, or security: false")
    sources = [(mirror, dist.suite)]
    sources += [(mirror, f"{dist.suite}-updates")] if updates else []
    sources += [(sec_mirror, f"{dist.suite}-security")] if security else []
    try:
        archive = archive_state(sources, paths.cache)
    except DistonetError:
        if not offline_ok:
            raise
        archive = OFFLINE
    epoch = archive_epoch(sources, paths.cache) if archive != OFFLINE else 0
    proxy = dist.proxy or os.environ.get("DISTONET_APT_PROXY")  # else the host's, when a step runs
    site = os.environ.get("DISTONET_SITE") or recipe.site
    site_vars = load_site(site, paths)
    overlays = overlay_facts(recipe, paths, site, site_vars, strict=not offline_ok)
    hooks = hook_facts(recipe, paths)
    repositories = repository_facts(recipe, paths, offline_ok)
    initramfs = initramfs_facts(recipe, paths)
    netboot = netboot_facts(recipe, paths, site)
    elements = element_facts(recipe.dib.elements, recipe.dib.environment, dist.suite, str(dist.architecture),
                             paths.element_dirs, recipe.name, paths.cache)
    debs = []
    for name in recipe.apt.debs:
        f = next((d / name for d in paths.deb_dirs if (d / name).is_file()), None)
        if f is None:
            raise RecipeError(f"{recipe.name}: apt.debs: no {name} in {', '.join(str(d) for d in paths.deb_dirs)}")
        debs.append({"name": name, "sha256": hashlib.sha256(f.read_bytes()).hexdigest(), "path": str(f)})
    hook_vars = {}
    if hooks:
        variables = template_variables(recipe, site_vars, site)
        facts_ = variables.pop(render.FACTS)
        hook_vars = {**variables, "recipe": facts_["recipe"], "suite": facts_["suite"],
                     "arch": facts_["architecture"], "site": facts_["site"] or ""}
    return PlanFacts(mirror=mirror, archive=archive, epoch=epoch, security_mirror=sec_mirror, proxy=proxy,
                     updates=updates, security=security, overlays=overlays, site=site,
                     hooks=tuple(hooks), hook_vars=hook_vars, repositories=tuple(repositories),
                     debs=tuple(debs), elements=elements, initramfs=tuple(initramfs),
                     netboot=netboot)


def repository_facts(recipe: Recipe, paths: Paths, offline_ok: bool) -> list[dict]:
    """Each extra repository with its key (found in keys/, digested) and its InRelease state."""
    out = []
    for repo in recipe.repositories:
        key = next((d / repo.key for d in paths.key_dirs if (d / repo.key).is_file()), None)
        if key is None:
            raise RecipeError(f"{recipe.name}: repositories.{repo.name}.key: no {repo.key} in "
                              f"{', '.join(str(d) for d in paths.key_dirs)}",
                              hint="keep the repository's signing key (gpg --export --armor) in keys/")
        uri = repo.uri.rstrip("/")
        try:
            state = archive_state([(uri, s) for s in repo.suites], paths.cache)
        except DistonetError:
            if not offline_ok:
                raise
            state = OFFLINE
        out.append({"name": repo.name, "uri": uri, "suites": list(repo.suites),
                    "components": list(repo.components), "key": repo.key,
                    "key_sha256": hashlib.sha256(key.read_bytes()).hexdigest(), "key_path": str(key),
                    "state": state})
    return out


def find_dir(name: str, dirs: tuple, what: str):
    """The first `<dir>/<name>` directory along a search path, or an error with did-you-mean."""
    found = next((d / name for d in dirs if (d / name).is_dir()), None)
    if found is None:
        known = sorted({p.name for d in dirs if d.is_dir() for p in d.iterdir() if p.is_dir()})
        close = difflib.get_close_matches(name, known, n=1)
        raise RecipeError(f"{what} '{name}' in {', '.join(str(d) for d in dirs)}"
                          + (f" (did you mean '{close[0]}'?)" if close else "")
                          + f"; known: {', '.join(known) or 'none'}")
    return found


def hook_facts(recipe: Recipe, paths: Paths) -> list[dict]:
    """The scripts of the recipe's hook sets, phase by phase, in run order, with their digests."""
    from .stages.hooks import PHASES
    sets = {}
    for name in recipe.hooks:
        d = find_dir(name, paths.hook_dirs, f"{recipe.name}: hooks: no hook set")
        unknown = [p.name for p in d.iterdir() if p.name not in PHASES]
        if unknown:
            raise RecipeError(f"{d}: unknown hook phase(s) {', '.join(sorted(unknown))}; "
                              f"phases: {', '.join(PHASES)}")
        sets[name] = d
    scripts = []
    for phase in PHASES:
        for name, d in sets.items():
            for f in sorted((d / phase).iterdir()) if (d / phase).is_dir() else []:
                if f.is_file() and not f.name.startswith("."):
                    scripts.append({"set": name, "phase": phase, "name": f.name, "dir": str(d),
                                    "sha256": hashlib.sha256(f.read_bytes()).hexdigest()})
    return scripts


def netboot_facts(recipe: Recipe, paths: Paths, site: str | None) -> dict:
    """The inventory's hosts of this recipe and its CHAP credentials (made the first time)."""
    from . import chap, inventory
    modes = recipe.netboot.modes
    if not modes:
        return {}
    facts_ = inventory.facts(site, paths.site_dirs, recipe.name, modes)
    facts_["chap"] = chap.facts(paths.secrets, recipe.name, recipe.netboot.iscsi.chap) \
        if {NetbootMode.iscsi, NetbootMode.iscsi_persistent} & set(modes) else None
    return facts_


def initramfs_facts(recipe: Recipe, paths: Paths) -> list[dict]:
    """The initramfs hook sets the recipe needs (netboot modes need `union`, iscsi `iscsi`, an
    ISO `live` and `union`), found and digested."""
    from .stages.initramfs import ISCSI, LIVE, NETROOT, UNION, hook_files
    names = [NETROOT, UNION] if recipe.netboot.modes else []
    names += [ISCSI] if {NetbootMode.iscsi, NetbootMode.iscsi_persistent} & set(recipe.netboot.modes) else []
    names += [n for n in (UNION, LIVE) if n not in names] if "iso" in recipe.enabled_outputs() else []
    out = []
    for name in names:
        d = find_dir(name, paths.initramfs_dirs, f"{recipe.name}: no initramfs hook set")
        out.append({"name": name, "dir": str(d), "files": hook_files(d)})
    return out


def load_site(site: str | None, paths: Paths) -> dict:
    """sites/<site>.yaml: the site's own values (a mapping), beside any recipe directory; a site
    may also be only a folder, sites/<site>/, with its inventory (inventory.py)."""
    if not site:
        return {}
    for d in paths.site_dirs:
        for suffix in (".yaml", ".yml"):
            f = d / f"{site}{suffix}"
            if f.is_file():
                try:
                    data = yaml.safe_load(f.read_text()) or {}
                except yaml.YAMLError as exc:
                    raise RecipeError(f"{f}: not valid YAML: {exc}") from None
                if not isinstance(data, dict):
                    raise RecipeError(f"{f}: a site file is a mapping of variables")
                return data
    if any((d / site).is_dir() for d in paths.site_dirs):
        return {}   # a site with an inventory (sites/<site>/hosts.yaml) and no values of its own
    known = sorted({p.stem for d in paths.site_dirs for p in d.glob("*.y*ml")})
    close = difflib.get_close_matches(site, known, n=1)
    raise RecipeError(f"site '{site}': no sites/{site}.yaml in {', '.join(str(d) for d in paths.site_dirs)}"
                      + (f" (did you mean '{close[0]}'?)" if close else ""),
                      hint="site= on the command line or site: in the recipe names a file in sites/")


def template_variables(recipe: Recipe, site_vars: dict, site: str | None) -> dict:
    """Recipe vars, then the site's values over them, and the build facts under `distonet`."""
    facts = {"recipe": recipe.name, "suite": recipe.distribution.suite,
             "architecture": str(recipe.distribution.architecture), "hostname": recipe.hostname,
             "site": site}
    return {**recipe.vars, **site_vars, render.FACTS: facts}


def overlay_facts(recipe: Recipe, paths: Paths, site: str | None, site_vars: dict | None = None,
                  strict: bool = True) -> dict:
    """For each overlay the recipe names: its directory, content digest and the values of the
    variables its templates read. Unknown overlays and undefined variables are errors here."""
    if not recipe.overlays:
        return {}
    variables = template_variables(recipe, load_site(site, paths) if site_vars is None else site_vars, site)
    out = {}
    for name in recipe.overlays:
        src = find_dir(name, paths.overlay_dirs, f"{recipe.name}: overlays: no overlay")
        meta_file = src.with_name(f"{name}.meta.yaml")
        meta = render.load_meta(meta_file)
        entries = render.scan(src, meta_file)
        if strict:  # (listing and cleaning go on with an undefined variable)
            render.check_variables(src, entries, set(variables))
        used = render.variables_used(src, entries)
        out[name] = {"dir": str(src), "digest": render.tree_digest(entries, meta),
                     "vars": {v: variables.get(v) for v in sorted(used)}}
    return out


@functools.lru_cache(maxsize=None)
def load_plan(name: str, paths: Paths | None = None, *, offline_ok: bool = False) -> BuildPlan:
    """Validate the recipe (before any work), resolve the mirrors and the archive state; when
    building, check every named package against the archive's indexes."""
    paths = paths or Paths.default()
    recipe = load_recipe(name, paths.search)
    facts = plan_facts(recipe, paths, offline_ok=offline_ok)
    plan = make_plan(recipe, paths, facts, source=recipe_path(paths.search, recipe_name(name)))
    if not offline_ok:
        check_packages(plan)
    return plan


def check_packages(plan: BuildPlan) -> None:
    """Every package the recipe names exists in the suites and components it builds from
    (names and virtual names of Packages indexes, kept per archive state). Where no index can
    be had (offline, no copy), the check is skipped and apt will say."""
    recipe, facts = plan.recipe, plan.facts
    dist = recipe.distribution
    wanted = {"kernel.package": [recipe.kernel.package], "kernel.initramfs": list(recipe.kernel.initramfs)}
    wanted.update({f"packages.{layer}": list(pkgs) for layer, pkgs in recipe.packages.items()})
    wanted["apt.purge"] = list(recipe.apt.purge)
    for phase, actions in facts.elements.get("packages", {}).items():  # package-installs, mapped
        wanted[f"dib.elements ({phase} packages)"] = list(actions.get("install", []))
    # A set of names found once in an archive state is found again: a plan that changes
    # neither reads no index (decompressing them is a tenth of a no-op build).
    passed = plan.paths.cache / "archive" / ("checked-" + digest(
        {"wanted": wanted, "archive": facts.archive, "repositories": [r["state"] for r in facts.repositories],
         "components": list(dist.components), "arch": str(dist.architecture), "suite": dist.suite,
         "updates": facts.updates, "security": facts.security})[:32])
    if passed.exists():
        return
    suites = [(facts.mirror, dist.suite)]
    suites += [(facts.mirror, f"{dist.suite}-updates")] if facts.updates else []
    suites += [(facts.security_mirror, f"{dist.suite}-security")] if facts.security else []
    available: set[str] = set()
    for repo in facts.repositories:  # the extra repositories' packages count too
        for suite in repo["suites"]:
            for comp in repo["components"]:
                available |= package_names(repo["uri"], suite, comp, str(dist.architecture), plan.paths.cache,
                                           repo["state"]) or set()
    for mirror, suite in suites:
        for comp in dist.components:
            names = package_names(mirror, suite, comp, str(dist.architecture), plan.paths.cache, facts.archive)
            if names is None and suite == dist.suite:
                log.info(f"archive: no package index for {suite}/{comp}; package names not checked")
                return
            available |= names or set()
    misses = missing_packages(wanted, available)
    if misses:
        raise check_error(plan.source, dist.suite, list(dist.components), misses,
                          [r["name"] for r in facts.repositories])
    if facts.archive != OFFLINE:
        with contextlib.suppress(OSError):
            passed.parent.mkdir(parents=True, exist_ok=True)
            passed.touch()


def load_plans(names: list[str], paths: Paths | None = None, *, offline_ok: bool = False) -> list[BuildPlan]:
    """Every named recipe, with every error of every recipe in one RecipeError."""
    plans, errors = [], []
    for name in dict.fromkeys(names):
        try:
            plans.append(load_plan(name, paths, offline_ok=offline_ok))
        except RecipeError as exc:
            errors.append(str(exc))
    if errors:
        raise RecipeError("\n".join(errors))
    return plans
