"""Recipe + host facts → BuildPlan. The only impure step before doit runs: it reads the build
host's apt configuration and fetches the archive's InRelease files (about 0.1 s each; offline,
the copies seen last), so that package stages are keyed on the archive's state."""

from __future__ import annotations

import functools
import os

from . import log
from .errors import DistonetError, RecipeError
from .host.archive import check_error, missing_packages, package_names
from .host.apt import archive_state, default_mirror, default_security_mirror, host_proxy
from .paths import Paths
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
    proxy = dist.proxy or os.environ.get("DISTONET_APT_PROXY") or host_proxy()
    return PlanFacts(mirror=mirror, archive=archive, security_mirror=sec_mirror, proxy=proxy,
                     updates=updates, security=security)


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
    suites = [(facts.mirror, dist.suite)]
    suites += [(facts.mirror, f"{dist.suite}-updates")] if facts.updates else []
    suites += [(facts.security_mirror, f"{dist.suite}-security")] if facts.security else []
    available: set[str] = set()
    for mirror, suite in suites:
        for comp in dist.components:
            names = package_names(mirror, suite, comp, str(dist.architecture), plan.paths.cache, facts.archive)
            if names is None and suite == dist.suite:
                log.info(f"archive: no package index for {suite}/{comp}; package names not checked")
                return
            available |= names or set()
    wanted = {"kernel.package": [recipe.kernel.package], "kernel.initramfs": list(recipe.kernel.initramfs)}
    wanted.update({f"packages.{layer}": list(pkgs) for layer, pkgs in recipe.packages.items()})
    misses = missing_packages(wanted, available)
    if misses:
        raise check_error(plan.source, dist.suite, list(dist.components), misses)


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
