"""Helpers shared by unit tests (one definition each)."""

from __future__ import annotations

from pathlib import Path

from distonet.plan import BuildPlan, PlanFacts, make_plan
from distonet.recipe import load_recipe

MIRROR = "http://archive.invalid/debian"
SECURITY = "http://archive.invalid/debian-security"


def facts(archive: str = "A", mirror: str = MIRROR, **kw) -> PlanFacts:
    return PlanFacts(mirror=mirror, archive=archive, security_mirror=SECURITY, **kw)


def plan_of(name: str, paths, archive: str = "A", mirror: str = MIRROR, **kw) -> BuildPlan:
    recipe = load_recipe(name, paths.search)
    return make_plan(recipe, paths, facts(archive, mirror, **kw))


def keys(plan: BuildPlan) -> dict[str, str]:
    return {s.name: s.key for s in plan.stages}


def write(dir_: Path, name: str, text: str) -> Path:
    path = Path(dir_) / f"{name}.yaml"
    path.write_text(text)
    return path
