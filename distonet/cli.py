"""The `distonet` command: build, boot, nightly, publish, fetch, push-stages, list, show, check, clean, prune, deploy-lvm, clones,
elements, schema.

`build` and `boot` run doit through its own API (DoitMain with a task loader), with the same
tasks, names and state as `doit build recipe=X`; the other verbs call the library directly.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from . import __version__, log
from .errors import DistonetError, RecipeError, report


def _need_root() -> None:
    if os.geteuid() != 0:
        raise DistonetError("distonet builds, boots and cleans as root (it mounts, chroots and "
                            "creates device nodes)", hint="run it with sudo, or as root")


def _doit(task: str, names: list[str], jobs: int, extra: tuple[str, ...] = ()) -> int:
    from doit.cmd_base import TaskLoader2
    from doit.doit_cmd import DoitMain
    from doit.loader import generate_tasks

    from .tasks import DOIT_CONFIG, load_tasks

    tasks = load_tasks(names, kept=task != "nightly")  # recipe errors surface here, before doit starts

    class Loader(TaskLoader2):
        def load_doit_config(self):
            return dict(DOIT_CONFIG)

        def load_tasks(self, cmd, pos_args):
            return generate_tasks("distonet", (t for t in tasks))

    if task == "nightly":
        from .tasks import LOADED, start_nightly
        start_nightly([p for p, _ in LOADED[-len(names):]])
    args = ["run", *extra, *(["-n", str(jobs), "-P", "process"] if jobs > 1 else []),
            *(f"{task}:{n}" for n in names)]
    from .doitdb import PLUGIN
    return DoitMain(Loader(), extra_config=PLUGIN).run(args)


def cmd_build(a) -> int:
    _need_root()
    from .paths import recipe_name
    return _doit("build", [recipe_name(n) for n in a.recipes], a.jobs)


def cmd_boot(a) -> int:
    _need_root()
    from .paths import recipe_name
    return _doit("boot", [recipe_name(n) for n in a.recipes], 1)


def cmd_nightly(a) -> int:
    """Build, boot-test and publish (nightly.py); exit 75 when another run holds the lock."""
    from .nightly import EX_TEMPFAIL, Busy
    from .paths import recipe_name
    _need_root()
    if a.share:
        os.environ["DISTONET_SHARE"] = a.share
    if a.cache:
        os.environ["DISTONET_STAGE_CACHE"] = a.cache
    try:
        from .tasks import all_recipes
        names = [recipe_name(n) for n in a.recipes] or all_recipes()
        return _doit("nightly", names, a.jobs, ("--continue",))
    except Busy as exc:
        report(exc)
        return EX_TEMPFAIL


def cmd_list(a) -> int:
    from .manifest import Manifest
    from .paths import Paths
    from .recipe import find_recipe, known_recipes, load_recipe
    paths = Paths.default()
    rows = []
    for name in known_recipes(paths.search):
        try:
            r = load_recipe(name, paths.search)
            desc, parents = r.description, ", ".join(r.extends) or "-"
        except RecipeError:
            desc, parents = "(invalid: see `distonet check`)", "?"
        try:
            m = Manifest.load(paths.recipe_output(name))
            built = f"built {m.built_at}"
        except DistonetError:
            built = "not built"
        rows.append((name, parents, built, desc, find_recipe(name, paths.search)))
    if a.json:
        print(json.dumps([{"name": n, "extends": p, "state": b, "description": d, "file": str(f)}
                          for n, p, b, d, f in rows], indent=2))
        return 0
    w = max((len(r[0]) for r in rows), default=4)
    pw = max((len(r[1]) for r in rows), default=7)
    print(f"{'recipe'.ljust(w)}  {'extends'.ljust(pw)}  {'state':<30}  description")
    for name, parents, built, desc, _ in rows:
        print(f"{name.ljust(w)}  {parents.ljust(pw)}  {built:<30}  {desc}")
    return 0


def cmd_show(a) -> int:
    import yaml

    from .paths import Paths
    from .recipe import load_recipe
    r = load_recipe(a.recipe, Paths.default().search)
    data = r.resolved()
    if a.json:
        print(json.dumps(data, indent=2))
    else:
        print(yaml.safe_dump(data, sort_keys=False, default_flow_style=None), end="")
    return 0


def cmd_check(a) -> int:
    from .paths import Paths
    from .recipe import known_recipes, load_recipe
    paths = Paths.default()
    bad = 0
    for name in a.recipes or known_recipes(paths.search):
        try:
            recipe = load_recipe(name, paths.search)
            if recipe.dib.elements:  # local files: checked without the archive
                from .elements import resolve
                resolve(recipe.dib.elements, paths.element_dirs, recipe.name)
            if a.archive:
                from .pipeline import load_plan
                load_plan(name, paths)
            log.info(f"{name}: ok")
        except DistonetError as exc:
            bad += 1
            report(exc)
    if bad:
        log.always(f"check: {bad} recipe(s) with errors")
    return 2 if bad else 0


def cmd_clean(a) -> int:
    _need_root()
    from .actions import clean
    from .pipeline import load_plan
    for name in a.recipes:
        removed = clean(load_plan(name, offline_ok=True), dry_run=a.dry_run)
        verb = "would remove" if a.dry_run else "removed"
        for path in removed:
            print(f"clean: {verb} {path}")
        if not removed:
            print(f"clean: {name}: nothing to remove")
    return 0


def cmd_prune(a) -> int:
    _need_root()
    from .actions import prune
    from .paths import Paths
    removed, busy = prune(Paths.default(), dry_run=a.dry_run)
    verb = "would remove" if a.dry_run else "removed"
    for r in removed:
        print(f"prune: {verb} {r.path.name} ({r.bytes / 2**20:.1f} MiB)")
    for b in busy:
        print(f"prune: kept {b.name}: a running build uses it")
    total = sum(r.bytes for r in removed)
    print(f"prune: {verb} {len(removed)} snapshot(s), {total / 2**20:.1f} MiB")
    return 0


def cmd_verify(a) -> int:
    _need_root()
    from .paths import Paths
    from .verify import verify
    r = verify(Paths.default(), content=a.content, recipes=a.recipes)
    for line in r.checked:
        log.info(f"verify: ok  {line}")
    for line in r.leftovers:
        print(f"verify: leftover  {line} (the next build clears it)")
    for line in r.problems:
        print(f"verify: UNSOUND  {line}")
    print(f"verify: {len(r.checked)} checked, {len(r.problems)} unsound, {len(r.leftovers)} leftover(s)")
    if r.problems:
        log.always("verify: rebuild what is named (distonet clean NAME, then build), or prune the store")
    return 0 if r.sound else 1


def cmd_deploy_lvm(a) -> int:
    from .deploy import deploy_lvm, manifest_path
    manifest = manifest_path(a.manifest)
    if not a.yes and not a.dry_run:
        _need_root()
    print(deploy_lvm(manifest, a.vg, a.lv, dry_run=a.dry_run))
    return 0


def cmd_elements(a) -> int:
    """The diskimage-builder elements a recipe can name, where each comes from, what it needs."""
    from .elements import search_path
    from .paths import Paths
    seen = set()
    for d in search_path(Paths.default().element_dirs):
        for e in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("_")):
            if e.name not in seen:
                seen.add(e.name)
                deps = (e / "element-deps").read_text().split() if (e / "element-deps").is_file() else []
                print(f"{e.name:28} {d}" + (f"  (needs {', '.join(deps)})" if deps else ""))
    return 0


def cmd_clones(a) -> int:
    """Per-node layers for the site inventory's hosts of a recipe (clones.py)."""
    _need_root()
    from . import inventory
    from .clones import make_clones
    from .errors import RecipeError
    from .paths import Paths
    from .recipe import load_recipe, recipe_name
    paths = Paths.default()
    recipe = load_recipe(recipe_name(a.recipe), paths.search)
    site = a.site or os.environ.get("DISTONET_SITE") or recipe.site
    if not inventory.find(site, paths.site_dirs):
        raise RecipeError(f"{recipe.name}: no inventory: sites/{site or '<site>'}/hosts.yaml",
                          hint="name the site (--site NAME or site: in the recipe) whose hosts.yaml lists the nodes")
    hosts = inventory.facts(site, paths.site_dirs, recipe.name, recipe.netboot.modes)["hosts"]
    layers = a.layers or recipe.netboot.layers.format(recipe=recipe.name)
    made = make_clones(hosts, layers, a.size_mib, tuple(a.reset))
    if not made:
        print(f"clones: no host of {recipe.name} boots nfs-persistent in sites/{site}/hosts.yaml")
    for m in made:
        print(f"{m.host:20} {m.path}  {'made' if m.made else 'kept'}")
    return 0


def cmd_publish(a) -> int:
    from . import publish as pub
    from .paths import Paths
    from .pipeline import load_site
    from .recipe import load_recipe, recipe_name
    paths = Paths.default()
    for name in [recipe_name(n) for n in a.recipes]:
        recipe = load_recipe(name, paths.search)
        site = a.site or os.environ.get("DISTONET_SITE") or recipe.site
        s = pub.settings(load_site(site, paths), a.share, a.keep, a.sign_key,
                         where=f"sites/{site}.yaml" if site else "the site file")
        pub.publish(paths.recipe_output(name), s.share, keep=s.keep, force=a.force, sign_key=s.sign_key,
                    gnupg_home=s.gnupg_home, ssh_options=s.ssh_options, stages_dir=paths.stages)
    return 0


def cmd_fetch(a) -> int:
    from . import publish as pub
    from .paths import Paths
    from .pipeline import load_site
    site = a.site or os.environ.get("DISTONET_SITE")
    s = pub.settings(load_site(site, Paths.default()), a.share, where=f"sites/{site}.yaml" if site else "the site file")
    print(pub.fetch(s.share, a.recipe, a.build, Path(a.to), s.ssh_options))
    return 0


def cmd_push_stages(a) -> int:
    """Push the stages of built recipes to the shared cache (a builder pushes what it builds
    itself; this seeds a new cache from a store that already has them)."""
    from . import stagecache
    from .pipeline import load_plans
    from .store import StageStore
    cache = stagecache.cache_for(a.cache or os.environ.get("DISTONET_STAGE_CACHE"))
    if cache is None:
        raise DistonetError("push-stages: no cache named", hint="--cache /mnt/cache or --cache oci://registry/namespace")
    for plan in load_plans([n for n in a.recipes]):
        store = StageStore(plan.paths.stages)
        for stage in plan.stages:
            if not store.done(stage.key):
                raise DistonetError(f"{plan.name}: stage {stage.name} is not built", hint=f"distonet build {plan.name}")
            stagecache.try_push(cache, stage.key, store.tree(stage.key), store.read_stamp(stage.key), stage.name,
                                scratch=plan.paths.work)
    return 0


def cmd_schema(a) -> int:
    from .recipe import json_schema
    print(json.dumps(json_schema(), indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="distonet", description="One YAML recipe to every bootable "
                                "artifact a site needs. Recipes are found in $DISTONET_RECIPES "
                                "(':'-separated) and then the shipped recipes/.")
    p.add_argument("--version", action="version", version=f"distonet {__version__}")
    p.add_argument("-q", "--quiet", action="count", default=0, help="only errors and the summary")
    p.add_argument("-v", "--verbose", action="count", default=0, help="every command's output too")
    p.add_argument("--site", metavar="NAME", help="site file sites/NAME.yaml for the overlays' templates "
                   "(overrides the recipe's site:)")
    sub = p.add_subparsers(dest="cmd", metavar="VERB", required=True)

    def verb(name, fn, help_):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    b = verb("build", cmd_build, "build recipes (several share one graph; shared stages are built once)")
    b.add_argument("recipes", nargs="+", metavar="NAME", help="recipe names (or their files)")
    b.add_argument("-n", "--jobs", type=int, default=1, help="run up to N steps at once")
    b = verb("boot", cmd_boot, "boot each recipe's disk under QEMU with its firmwares; record the results")
    b.add_argument("recipes", nargs="+", metavar="NAME")
    b = verb("nightly", cmd_nightly, "build, boot-test and publish recipes (all when none named), under a "
             "lock; a summary; exit 0 all on the share, 1 one failed, 2 bad input, 75 another run holds the lock")
    b.add_argument("recipes", nargs="*", metavar="NAME")
    b.add_argument("--share", metavar="SHARE", help="default: the site file's publish.share")
    b.add_argument("--cache", metavar="CACHE", help="a stage cache shared with other builders")
    b.add_argument("-n", "--jobs", type=int, default=1, help="run up to N steps at once")
    b = verb("list", cmd_list, "the recipes: parents, built or not, description")
    b.add_argument("--json", action="store_true")
    b = verb("show", cmd_show, "the resolved recipe (extends merged, defaults filled, secrets removed)")
    b.add_argument("recipe", metavar="NAME")
    b.add_argument("--json", action="store_true")
    b = verb("check", cmd_check, "validate recipes (all when none named); every error, non-zero at the end")
    b.add_argument("recipes", nargs="*", metavar="NAME")
    b.add_argument("--archive", action="store_true", help="also ask the archive for the suites")
    b = verb("clean", cmd_clean, "remove a recipe's outputs and the stages no other recipe uses")
    b.add_argument("recipes", nargs="+", metavar="NAME")
    b.add_argument("-n", "--dry-run", action="store_true", help="say what would go")
    b = verb("prune", cmd_prune, "remove stage snapshots no manifest in output/ uses and no build holds")
    b.add_argument("-n", "--dry-run", action="store_true", help="say what would go")
    b = verb("verify", cmd_verify, "prove the stage store and output/ sound: every stamped stage complete "
             "(its packages' files present), every manifest's artifacts matching their digests; exit 1 if not")
    b.add_argument("recipes", nargs="*", metavar="NAME", help="only these recipes' builds and stages")
    b.add_argument("--content", action="store_true", help="also check every packaged file against dpkg's md5sums")
    b = verb("deploy-lvm", cmd_deploy_lvm, "create an LV of exactly rootfs.img's size, copy it, verify")
    b.add_argument("manifest", metavar="RECIPE|DIR|MANIFEST")
    b.add_argument("vg")
    b.add_argument("lv")
    b.add_argument("--dry-run", action="store_true", help="print the commands only")
    b.add_argument("--yes", action="store_true", help=argparse.SUPPRESS)
    b = verb("clones", cmd_clones, "make the per-node persistent layers of a recipe's hosts in the site "
             "inventory (sites/SITE/hosts.yaml), beside the master, never copying it")
    b.add_argument("recipe", metavar="NAME")
    b.add_argument("--layers", metavar="DIR", help="where the layers go (default: the recipe's netboot.layers)")
    b.add_argument("--size-mib", type=int, default=4096, help="each new layer's size (sparse)")
    b.add_argument("--reset", action="append", default=[], metavar="HOST", help="replace this host's layer")
    b = verb("publish", cmd_publish, "copy each recipe's boot-tested build to the share, verify it, sign it, "
             "then switch SHARE/RECIPE/latest to it; keep the last N builds")
    b.add_argument("recipes", nargs="+", metavar="NAME")
    b.add_argument("--share", metavar="PATH", help="default: the site file's publish.share")
    b.add_argument("--keep", type=int, metavar="N", help="builds to keep per recipe (default 5; latest always)")
    b.add_argument("--sign-key", metavar="KEY", help="sign SHA256SUMS with this GPG key")
    b.add_argument("--force", action="store_true", help="publish a build whose boot test failed or never ran")
    b = verb("fetch", cmd_fetch, "download a published build (latest, or --build ID) from a file share or an "
             "OCI registry into DIR/RECIPE-BUILDID/, every file checked")
    b.add_argument("recipe", metavar="NAME")
    b.add_argument("--share", metavar="SHARE", help="default: the site file's publish.share")
    b.add_argument("--build", default="latest", metavar="ID")
    b.add_argument("--to", default=".", metavar="DIR")
    b = verb("push-stages", cmd_push_stages, "push the built stages of recipes to a stage cache shared by "
             "builders (a directory or an OCI registry); builds with cache= push what they build themselves")
    b.add_argument("recipes", nargs="+", metavar="NAME")
    b.add_argument("--cache", metavar="CACHE", help="default: $DISTONET_STAGE_CACHE")
    verb("elements", cmd_elements, "the diskimage-builder elements recipes can name (dib.elements)")
    verb("schema", cmd_schema, "print the recipe JSON Schema")
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    log.set_level(max(0, min(2, log.NORMAL - a.quiet + a.verbose)))
    if a.site:
        os.environ["DISTONET_SITE"] = a.site
    from .tasks import _signals
    _signals()      # SIGTERM unwinds every verb as Ctrl-C does (publish, clean, verify too)
    try:
        return a.fn(a)
    except (DistonetError, KeyboardInterrupt) as exc:
        return report(exc)
