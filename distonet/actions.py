"""What doit's actions call: build a stage, make an output, commit the build, boot it, clean.
Each reads the plan; none decides order (the plan's order, doit's graph)."""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import __version__, faults, log, outdir
from .errors import BuildError
from .host.apt import host_proxy
from .host import scratch
from .host.ledger import Ledger, recover
from .host.namespace import enter_private_mounts
from .host.run import check_tools, run
from .current import HASHING, Hashing, made, manifest_current, output_current, stage_done  # noqa: F401  (output_current: the old home)
from .manifest import Artifact, BootRecord, Manifest, hashes_later, with_hashes
from .outputs import REGISTRY as OUTPUTS
from .outputs.base import OutputContext
from .plan import BuildPlan, Stage
from .secrets import redact
from .stages import REGISTRY as STAGES
from .stages.base import HostFacts, StageContext
from .store import StageStore, finish_copies, remove_tree

BASE_TOOLS = ("mount", "umount", "chroot")


def store_of(plan: BuildPlan) -> StageStore:
    return StageStore(plan.paths.stages)


def host_facts(plan: BuildPlan) -> HostFacts:
    f = plan.facts
    return HostFacts(mirror=f.mirror, cache=plan.paths.cache, work=plan.paths.work, proxy=f.proxy or host_proxy(),
                     security_mirror=f.security_mirror, epoch=f.epoch,
                     sources={**{f"overlay:{n}": Path(o["dir"]) for n, o in f.overlays.items()},
                              **{f"hooks:{h['set']}": Path(h["dir"]) for h in f.hooks},
                              **{f"key:{r['name']}": Path(r["key_path"]) for r in f.repositories},
                              **{f"deb:{d['name']}": Path(d["path"]) for d in f.debs},
                              **{f"element:{e['name']}": Path(e["dir"]) for e in f.elements.get("elements", ())},
                              **{f"initramfs:{i['name']}": Path(i["dir"]) for i in f.initramfs}})


def tools_needed(plan: BuildPlan) -> list[str]:
    tools = list(BASE_TOOLS)
    for s in plan.stages:
        tools += STAGES[s.kind].host_tools(s.inputs)
    for o in plan.outputs:
        tools += OUTPUTS[o.name].tools
    return list(dict.fromkeys(tools))


def _prepare(plan: BuildPlan) -> StageStore:
    """Before a stage or output acts: tools present, a private mount namespace, what a dead
    build left undone, and this run's claim on every stage of the plan (prune skips them)."""
    check_tools(tools_needed(plan))
    log.set_log_file(plan.paths.cache / "logs" / f"{plan.name}.log")
    enter_private_mounts()
    recover(plan.paths.ledger)
    store = store_of(plan)
    store.hold(s.key for s in plan.stages)
    store.clear_dead_partials()
    return store


# -- stages ----------------------------------------------------------------------------------

def build_stage(plan: BuildPlan, stage_name: str, runner=run) -> dict:
    store = _prepare(plan)
    return _run_stage(plan, store, plan.stage(stage_name), runner)


def _run_stage(plan: BuildPlan, store: StageStore, stage: Stage, runner) -> dict:
    if stage_done(plan, stage):
        return store.read_stamp(stage.key)
    if stage.parent is not None and not stage_done(plan, stage.parent):
        _run_stage(plan, store, stage.parent, runner)
    from . import stagecache
    shared = stagecache.configured()

    def push(stamp: dict) -> None:
        stagecache.try_push(shared, stage.key, store.tree(stage.key), stamp, stage.name, runner,
                            scratch=plan.paths.work)

    with contextlib.ExitStack() as held:
        held.enter_context(store.building(stage.key, stage.name))
        # Another build (a recipe sharing this stage) may have made it while we waited.
        if store.done(stage.key):
            return store.read_stamp(stage.key)
        partial = store.begin(stage.key)
        try:
            faults.point(f"stage:{stage.name}:begin")
            pulled = stagecache.try_pull(shared, stage.key, partial, stage.name, runner)
        except BaseException:            # interrupted before any work: no partial left behind
            store.abandon(partial)
            raise
        if pulled is not None:           # another builder made it: checked, unpacked, not run
            return store.commit(stage.key, partial, pulled)
        started = time.time()
        ctx = StageContext(name=stage.name, key=stage.key, inputs=stage.inputs,
                           parents=tuple(s.key for s in stage.parent.ancestry()) if stage.parent else (),
                           partial=partial, host=host_facts(plan), store=store,
                           ledger=None, runner=runner)  # type: ignore[arg-type]
        holder = Ledger(plan.paths.ledger, runner)   # the tmpfs; not entered: it may outlive this call
        held.callback(holder.close)
        try:
            with log.step(f"{stage.name} [{stage.short}]") as timing:
                extra, where = _make(plan, stage, ctx, holder, runner)
                if where is not None:
                    finish_copies()                  # the layers below first
                    if not _in_doit_process():
                        scratch.keep(where, partial, runner)
        except BaseException:
            store.abandon(partial)
            raise
        stamp = {"stage": stage.name, "kind": stage.kind, "key": stage.key, "parents": list(ctx.parents),
                 "recipe": plan.name,
                 "started": started, "seconds": timing["seconds"], "inputs": redact(dict(stage.inputs)),
                 "mirror": plan.facts.mirror, **extra}
        if where is not None and _in_doit_process():
            copy = holder.spawn(scratch.keep_argv(where, partial))
            return store.commit_later(stage.key, where / "tree", partial, stamp, copy, held.pop_all(), push)
        stamp = store.commit(stage.key, partial, stamp)
    push(stamp)
    return stamp


def _in_doit_process() -> bool:
    """Whether a stage's copy into the store may run behind the build: only in doit's own
    process. The next stage may run in another `-P process` worker, which could not read the
    tree from this one's tmpfs, so there each stage is copied before it returns. (Artifact
    hashes run behind in workers too: a thread, and the output's lock tells other workers.)"""
    import multiprocessing
    return multiprocessing.parent_process() is None


def _make(plan: BuildPlan, stage: Stage, ctx: StageContext, holder: Ledger, runner) -> tuple[dict, Path | None]:
    """Make the stage in a tmpfs (mounted in `holder`) and return (stamp fields, the tmpfs), or
    on disk in ctx.partial (the tmpfs None) when memory is short; a stage that outgrows its
    tmpfs is made again on disk."""
    partial = ctx.partial
    where = scratch.mount(holder, plan.paths.work, stage.key)
    if where is not None:
        ctx.partial = where
        try:
            with Ledger(plan.paths.ledger, runner) as ledger:
                ctx.ledger = ledger
                return STAGES[stage.kind].make(ctx) or {}, where
        except Exception:
            if not scratch.full(where):
                raise
            log.always(f"  {stage.name} outgrew the memory it may use: making it again on disk")
        finally:
            ctx.partial = partial
        holder.close()
        for child in partial.iterdir():
            remove_tree(child)
    with Ledger(plan.paths.ledger, runner) as ledger:
        ctx.ledger = ledger
        return STAGES[stage.kind].make(ctx) or {}, None


# -- outputs ---------------------------------------------------------------------------------

_hasher: ThreadPoolExecutor | None = None


def finish_hashes() -> None:
    """Wait for the artifacts this process hashes behind the build (their states written)."""
    errors = []
    while HASHING:
        (_, name), h = HASHING.popitem()
        try:
            h.future.result()
        except OSError as exc:
            errors.append(BuildError(f"output {name}: cannot hash its artifacts: {exc}",
                                     hint="check the output directory's disk; the next build remakes it"))
    if errors:
        raise errors[0]


def _hash_and_record(arts: list[Artifact], unhashed: list, directory: Path, name: str, key: str,
                     started: float, seconds: float, locks: contextlib.ExitStack) -> list[Artifact]:
    """In the hashing thread: the digests, the output's state, then its locks released."""
    try:
        arts = with_hashes(arts, unhashed)
        outdir.write_state(directory, name, key, started, seconds, arts)
        return arts
    finally:
        locks.close()


def finish_behind() -> None:
    """Everything this process left running behind the build: artifact hashes, stage copies."""
    try:
        finish_hashes()
    finally:
        finish_copies()


def _finish_behind_at_exit() -> None:
    # A caller that made stages or outputs without committing the build (a test, a script)
    # still gets them stored and recorded.
    try:
        finish_behind()
    except Exception as exc:
        print(f"distonet: {exc}", file=sys.stderr)


atexit.register(_finish_behind_at_exit)


def build_output(plan: BuildPlan, name: str, runner=run) -> list[Artifact]:
    global _hasher
    step = plan.output(name)
    cls = OUTPUTS[name]
    store = _prepare(plan)
    current = plan.out_dir
    nxt = outdir.staging(current)
    with contextlib.ExitStack() as locks:
        locks.enter_context(outdir.locked(current, shared=True))
        locks.enter_context(outdir.locked(current, name))
        already = made(plan, name)
        if already is not None:  # made by another build while we waited
            return already[1]
        inputs = {}
        for need in step.needs:
            there = made(plan, need, wait=True)
            if there is None:
                raise BuildError(f"{plan.name}: output {name} needs {need}, which is not built",
                                 hint=f"build the whole recipe: distonet build {plan.name}")
            inputs[need] = [a.at(there[0]) for a in there[1]]
        nxt.mkdir(parents=True, exist_ok=True)
        work = plan.paths.work / f"{name}-{plan.name}-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        started = time.time()
        try:
            faults.point(f"output:{name}:begin")
            with log.step(f"{name} [{step.short}]") as timing, Ledger(plan.paths.ledger, runner) as ledger, \
                    hashes_later() as unhashed:
                tree = None
                if cls.needs_tree:
                    merged = plan.paths.work / f"out-{name}-{os.getpid()}"
                    tree = store.mount(ledger, [s.key for s in plan.sealed.ancestry()], merged)
                reads = {r: getattr(plan.recipe, r) for r in cls.reads}
                ctx = OutputContext(options=step.options, reads=reads, build=plan.build, inputs=inputs,
                                    out=nxt, work=work, tree=tree, ledger=ledger, runner=runner,
                                    cache=plan.paths.cache)
                arts = cls.make(ctx)
                faults.point(f"output:{name}:made")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if unhashed:
            # sha256 of a GB image is about a second of CPU: a thread does it while the next
            # output runs (hashlib releases the GIL), the state waits for it.
            # (A -P process worker joins the thread before it exits: threading's shutdown.)
            # Two threads in doit's own process: a build's last images are hashed on both cores.
            # One in a `-P process` worker: there the other core runs the other worker's step.
            # Said before the digests are in: a step in another process that needs these files
            # reads them now instead of waiting for the hash (current.made).
            outdir.write_state(nxt, name, step.key, started, timing["seconds"], arts, hashing=True)
            _hasher = _hasher or ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1) if _in_doit_process() else 1,
                                                    thread_name_prefix="hash")
            future = _hasher.submit(_hash_and_record, arts, list(unhashed), nxt, name, step.key, started,
                                    timing["seconds"], locks.pop_all())
            HASHING[(str(nxt), name)] = Hashing(future, nxt, step.key, arts)
            return arts
        outdir.write_state(nxt, name, step.key, started, timing["seconds"], arts)
        return arts


# -- the build as one set ---------------------------------------------------------------------

def commit(plan: BuildPlan) -> Path:
    """Carry unchanged outputs over, write manifest and SHA256SUMS, swap the set in."""
    finish_behind()   # the artifacts hashed, the stages in the store: then the build is done
    current, nxt = plan.out_dir, outdir.staging(plan.out_dir)
    with outdir.locked(current):
        if manifest_current(plan):
            return current / "manifest.json"
        nxt.mkdir(parents=True, exist_ok=True)
        files: set[str] = set()
        arts: list[Artifact] = []
        outputs = []
        for o in plan.outputs:
            where = outdir.find(current, o.name, o.key)
            if where is None:
                raise BuildError(f"{plan.name}: output {o.name} is not built",
                                 hint=f"distonet build {plan.name}")
            if where == current:
                outdir.carry_over(current, o.name)
            state = outdir.read_state(nxt, o.name)
            files |= set(state["files"])
            arts += outdir.artifacts(nxt, o.name)
            outputs.append({"name": o.name, "key": o.key, "seconds": state["seconds"]})
        outdir.prune_next(current, files | {outdir.STATE}, {o.name for o in plan.outputs})
        store = store_of(plan)
        stamps = [store.read_stamp(s.key) for s in plan.stages]
        manifest = Manifest(
            recipe=plan.name, build_id=plan.build_id,
            built_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            distonet_version=__version__, resolved_recipe=plan.recipe.resolved(),
            mirror=plan.facts.mirror, archive_state=plan.facts.archive, root_uuid=plan.root_uuid,
            kernel_cmdline=list(plan.build.cmdline),
            stages=[{"name": s.name, "kind": s.kind, "key": s.key, "seconds": st.get("seconds"),
                     "built_at": _iso(st.get("started"))} for s, st in zip(plan.stages, stamps)],
            outputs=outputs, packages=stamps[-1].get("packages", []), artifacts=arts,
            git_commit=git_commit(plan.source.parent), site=plan.facts.site,
            overlay_files=[{"overlay": s.name.split(".", 1)[1], **f}
                           for s, st in zip(plan.stages, stamps) if s.kind == "overlay" for f in st.get("files", [])])
        manifest.save(nxt)
        faults.point(f"commit:{plan.name}:swap")
        outdir.swap_in(current, run)
        faults.point(f"commit:{plan.name}:done")
        return current / "manifest.json"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat(timespec="seconds")


def git_commit(directory: Path) -> str | None:
    """The commit of the repository holding the recipe, with '+dirty' when it has changes."""
    try:
        head = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(directory), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


# -- boot -------------------------------------------------------------------------------------

def boot(plan: BuildPlan) -> list:
    from .boot.qemu import boot_recipe
    from .errors import BootError
    m = Manifest.load(plan.out_dir)
    kinds = {a.kind for a in m.artifacts}
    disk, netboot = "disk" in kinds, {"pxe", "config"} <= kinds
    hypervisors = {a.kind: plan.out_dir / a.path for a in m.artifacts if a.kind in ("ova", "xen", "iso")}
    if not disk and not netboot and not hypervisors:
        raise BootError(f"{plan.name}: the build has no disk.raw and no netboot outputs; nothing to boot",
                        hint=f"add `disk: {{}}` (or nfsroot, pxe and config) under outputs in {plan.source}")
    results = boot_recipe(plan, disk=disk, netboot=netboot, hypervisors=hypervisors)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    booted = {r.name.split("/")[0] for r in results}
    with outdir.locked(plan.out_dir):
        m = Manifest.load(plan.out_dir)
        if m.build_id == plan.build_id:
            m.boots = [b for b in m.boots if b.artifact not in booted] + [
                BootRecord(r.name.split("/")[0], r.name.split("/")[-1], r.reached, r.seconds, r.accel, now)
                for r in results]
            m.save(plan.out_dir)
    failed = [r for r in results if not r.reached]
    if failed:
        raise BootError("the marker did not reach the serial console: " + "; ".join(r.line() for r in failed),
                        hint=f"read the console and QEMU logs in {plan.out_dir / 'boot'}")
    return results


# -- publish ----------------------------------------------------------------------------------

def publish_settings(plan: BuildPlan):
    """The share and its settings: share= (DISTONET_SHARE), else the site file's publish:."""
    from . import publish as pub
    from .pipeline import load_site
    site = os.environ.get("DISTONET_SITE") or plan.recipe.site
    return pub.settings(load_site(site, plan.paths), os.environ.get("DISTONET_SHARE"),
                        where=f"sites/{site}.yaml" if site else "the site file")


def publish(plan: BuildPlan, force: bool = False):
    """`doit publish recipe=X share=S`: the share from share= (DISTONET_SHARE) or the site file."""
    from . import publish as pub
    s = publish_settings(plan)
    return pub.publish(plan.out_dir, s.share, keep=s.keep, force=force or bool(os.environ.get("DISTONET_FORCE")),
                       sign_key=s.sign_key, gnupg_home=s.gnupg_home, ssh_options=s.ssh_options,
                       stages_dir=plan.paths.stages)


def nightly(plan: BuildPlan):
    """`doit nightly`: boot unless passed, publish unless there (nightly.py)."""
    from .nightly import run_recipe
    return run_recipe(plan)


# -- clean and prune ------------------------------------------------------------------------

def stages_in_use(output: Path, skip: str | None = None) -> set[str]:
    """Stage keys the manifests in output/ (except recipe `skip`'s) were built from.
    An unreadable manifest is an error: guessing would delete what it uses."""
    keys = set()
    for path in sorted(output.glob("*/manifest.json")) if output.is_dir() else []:
        if path.parent.name == skip:
            continue
        keys |= {s["key"] for s in Manifest.load(path).stages}
    return keys


def clean(plan: BuildPlan, dry_run: bool = False) -> list:
    """Outputs first (refused while a build of the recipe runs), then the stages no other
    recipe's manifest uses and no running build holds."""
    recover(plan.paths.ledger)
    removed = []
    with outdir.locked(plan.out_dir, wait=False):
        for d in (plan.out_dir, outdir.staging(plan.out_dir)):
            if d.exists():
                removed.append(d)
                if not dry_run:
                    remove_tree(d)
        for d in outdir.in_trash(plan.out_dir):   # a replaced build whose removal has not ended
            removed.append(d)
            if not dry_run:
                shutil.rmtree(d, ignore_errors=True)   # a removal behind the build may be at it too
    keep = stages_in_use(plan.paths.output, skip=plan.name)
    gone, busy = store_of(plan).remove([s.key for s in plan.stages if s.key not in keep], dry_run)
    for b in busy:
        log.info(f"clean: {b} is in use by a running build; left alone")
    return removed + [r.path for r in gone]


def prune(paths, dry_run: bool = False):
    """Remove the stage snapshots no manifest in output/ uses and no running build holds."""
    recover(paths.ledger)
    keep = stages_in_use(paths.output)
    return StageStore(paths.stages).gc(keep, dry_run)
