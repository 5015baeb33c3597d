"""Fault injection (DISTONET_FAULT) through every named point of a build and a publish: SIGKILL,
SIGTERM, Ctrl-C and an error at each. After each: nothing mounted in any namespace, no loop
device, no process inside our trees, no partial stage, no half-written artifact, the previous
build (if any) still whole, `distonet verify` sound; and the next run completes.

CI drives one action per point (rotating); the nightly job drives every action at every point."""

import itertools
import os
import re
import signal
import subprocess
import sys

import pytest

from distonet import PROJECT_ROOT
from distonet.manifest import Manifest
from distonet.paths import Paths
from distonet.publish import PARTIAL, LocalShare
from distonet.stagecache import DirCache
from distonet.store import StageStore
from distonet.verify import verify
from tests.integration.conftest import all_mount_points, distonet, leftovers, plan_for, sharing_downloads, wait_for
from tests.integration.test_publish_shares import registry, sshd  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration

ACTIONS = {"kill": -signal.SIGKILL, "term": 143, "int": 130, "fail": 1}

BUILD_POINTS = ["stage:overlay.f:begin", "stage:overlay.f:made", "stage:overlay.f:renamed",
                "stage:overlay.f:committed", "stage:seal:made", "command:mkfs.ext4", "output:rootfs:made",
                "output:qcow2:begin", "command:qemu-img", "commit:{name}:swap", "commit:{name}:done"]
PUBLISH_POINTS = ["publish:{name}:copied", "publish:{name}:rename", "publish:{name}:committed"]


# CI drives these (one of each kind: a stage's commit, a command running, the build's commit,
# a publish's copy), an action each in turn; the nightly job drives every action everywhere.
CI_POINTS = {"stage:overlay.f:made", "command:mkfs.ext4", "commit:{name}:swap", "publish:{name}:copied"}


def cases(points, every: bool):
    """(point, action) pairs: all of them nightly; in CI the CI_POINTS, the actions in turn."""
    if every:
        return [pytest.param(p, a, marks=pytest.mark.nightly, id=f"{p}-{a}")
                for p, a in itertools.product(points, ACTIONS)]
    chosen = [p for p in points if p in CI_POINTS]
    return [pytest.param(p, a, id=f"{p}-{a}") for p, a in zip(chosen, itertools.cycle(ACTIONS))]


def run(recipes, *args, fault: str | None = None, timeout=900, env: dict | None = None) -> subprocess.CompletedProcess:
    """`distonet ARGS` as a user's shell starts it (its own process group, SIGINT at its default)."""
    env = dict(os.environ, DISTONET_RECIPES=str(recipes), **(env or {}))
    if fault:
        env["DISTONET_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "distonet", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, process_group=0,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def faulty_recipe(recipes, tmp_path, name: str, content: str, disks: bool = True) -> None:
    """minimal with one overlay file (a cheap stage of its own), rootfs and kernel, and unless
    `disks` is false the disk and its qcow2."""
    overlay = recipes.parent / "overlays" / "f"          # found beside the recipes directory
    (overlay / "etc").mkdir(parents=True, exist_ok=True)
    (overlay / "etc/fault-marker").write_text(content)
    (recipes / f"{name}.yaml").write_text(
        f"extends: minimal\nhostname: {name}\noverlays: [f]\n"
        "replace: [outputs]\noutputs: {rootfs: {}, kernel: {}" + (", disk: {}, qcow2: {}" if disks else "") + "}\n")


def assert_sound_after(recipes, name: str, code: int, expected: int, err: str) -> None:
    assert code == expected, f"exit {code}, wanted {expected}:\n{err[-3000:]}"
    if expected not in (-signal.SIGKILL,):
        assert "Traceback" not in err, err[-3000:]
    paths = Paths.default()
    wait_for(lambda: leftovers(paths) == [], 60, "the interrupted build's leftovers to vanish")
    current = paths.output / name
    if (current / "manifest.json").exists():       # the last complete build stands, whole
        r = verify(paths, recipes=[name])
        assert r.sound, r.problems
    assert not [p for p in current.glob("*") if ".tmp" in p.name or p.name.endswith(".part")]


@pytest.mark.parametrize("point,action", cases(BUILD_POINTS, every=False) + cases(BUILD_POINTS, every=True))
def test_a_build_faulted_at_a_point_leaves_nothing_and_the_next_completes(minimal_plan, recipes, tmp_path,
                                                                           point, action):
    name = "faulted"
    faulty_recipe(recipes, tmp_path, name, f"{point} {action}\n", disks="qcow2" in point or "qemu" in point)
    distonet("clean", name, recipes=recipes)      # its stages left by an earlier, failed run: the fault must fire
    plan = plan_for(name, recipes)
    proc = run(recipes, "build", name, fault=f"{point.format(name=name)}:{action}")
    assert_sound_after(recipes, name, proc.returncode, ACTIONS[action], proc.stderr)
    if action == "fail":
        assert "fault injected at" in proc.stderr
    assert not list(plan.paths.stages.glob(f"{plan.stage('overlay.f').key[:32]}.partial-*")) \
        or action == "kill"                          # a SIGKILLed build's partial: cleared next run

    again = run(recipes, "build", name)
    assert again.returncode == 0, again.stderr[-3000:]
    assert Manifest.load(plan.out_dir).build_id == plan.build_id
    assert not list(plan.paths.stages.glob("*.partial-*"))
    r = verify(Paths.default(), recipes=[name])
    assert r.sound and r.checked, r.problems
    assert leftovers(Paths.default()) == []
    distonet("clean", name, recipes=recipes)


@pytest.mark.nightly
def test_every_stage_and_output_of_a_full_recipe_faulted_in_turn(minimal_plan, recipes, tmp_path):
    """A recipe with every output kind (hpc-node's netboot outputs, vm's hypervisor and live ones)
    and stages of its own: one build after another, each faulted where the last stopped (its
    own stages, then every output as it is made, the actions in turn). After each, nothing
    left and what stands is sound; the last build, without a fault, completes and verifies."""
    name = "faultall"
    overlay = recipes.parent / "overlays" / "f"
    (overlay / "etc").mkdir(parents=True, exist_ok=True)
    (overlay / "etc/fault-marker").write_text("every stage and output\n")
    (recipes / f"{name}.yaml").write_text(
        "extends: [hpc-node, vm]\noverlays: [f]\npackages:\n  faulted: [hello]\n")
    distonet("clean", name, recipes=recipes)
    plan = plan_for(name, recipes)
    store = StageStore(plan.paths.stages)
    own = [s.name for s in plan.stages if not store.done(s.key)]
    assert {"packages.faulted", "overlay.f", "initramfs", "seal"} <= set(own), own
    # (a `fail` once a stage is stamped fails the build at its end, not at once: the stage is
    # whole and later steps go on; so the stamp gets a signal)
    phases = itertools.cycle(["made", "renamed", "begin", "committed"])
    stage_actions = itertools.cycle(["fail", "kill", "term", "int"])
    for stage in own:                                   # stages run in their chain's order
        point, action = f"stage:{stage}:{next(phases)}", next(stage_actions)
        proc = run(recipes, "build", name, fault=f"{point}:{action}")
        assert_sound_after(recipes, name, proc.returncode, ACTIONS[action], proc.stderr)
        if action == "fail":
            assert f"fault injected at {point}" in proc.stderr, proc.stderr[-3000:]
    # Outputs run in no fixed order: each build is faulted at whichever output not faulted yet
    # it makes first (the last one it started), so every output not yet made is faulted once.
    # (a stage made in doit's own process is stamped behind the build, so the faults above fire
    # at its end, its outputs made: another host name, another seal, every output to make again)
    from distonet.actions import output_current
    (recipes / f"{name}.yaml").write_text((recipes / f"{name}.yaml").read_text() + "hostname: faultall2\n")
    plan = plan_for(name, recipes)
    actions = itertools.cycle(ACTIONS)
    remaining = [o.name for o in plan.outputs]
    assert not any(output_current(plan, o) for o in remaining)
    while remaining:
        action = next(actions)
        proc = run(recipes, "build", name, fault=",".join(f"output:{o}:made:{action}" for o in remaining))
        assert_sound_after(recipes, name, proc.returncode, ACTIONS[action], proc.stderr)
        hit = re.findall(r"▶ (\S+) \[", proc.stderr)[-1]
        assert hit in remaining, (hit, remaining, proc.stderr[-3000:])
        if action == "fail":
            assert f"fault injected at output:{hit}:made" in proc.stderr, proc.stderr[-3000:]
        remaining.remove(hit)
    done = run(recipes, "build", name)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {a.kind for a in Manifest.load(plan.out_dir).artifacts} >= \
        {"rootfs", "disk", "qcow2", "nfsroot", "ova", "iso", "squashfs", "sbom", "pxe"}
    r = verify(Paths.default(), recipes=[name])
    assert r.sound and r.checked, r.problems
    assert not list(plan.paths.stages.glob("*.partial-*"))
    distonet("clean", name, recipes=recipes)


@pytest.mark.parametrize("point,action", cases(PUBLISH_POINTS, every=False) + cases(PUBLISH_POINTS, every=True))
def test_a_publish_faulted_at_a_point_leaves_the_share_whole(minimal_plan, recipes, tmp_path, point, action):
    name = "faultpub"
    faulty_recipe(recipes, tmp_path, name, "publish\n", disks=False)
    plan = plan_for(name, recipes)
    built = run(recipes, "build", name)
    assert built.returncode == 0, built.stderr[-3000:]
    share = tmp_path / "share"
    proc = run(recipes, "publish", name, "--share", str(share), "--force",
               fault=f"{point.format(name=name)}:{action}")
    # (an error outside doit exits with distonet's own code for it: 5, a build error)
    assert_sound_after(recipes, name, proc.returncode, 5 if action == "fail" else ACTIONS[action], proc.stderr)
    s = LocalShare(share)
    # Either nothing is published, or the build is there whole; `latest` names a whole build or nothing.
    for build_id in s.builds(name):
        from distonet.publish import verify as verify_published
        verify_published(share / name / build_id, Manifest.load(share / name / build_id))
    if s.latest(name):
        assert s.latest(name) in s.builds(name)

    again = run(recipes, "publish", name, "--share", str(share), "--force")
    assert again.returncode == 0, again.stderr[-3000:]
    assert s.latest(name) == plan.build_id and s.builds(name) == [plan.build_id]
    assert not [p for p in (share / name).iterdir() if p.name.startswith(PARTIAL)]   # the resumed copy went in
    distonet("clean", name, recipes=recipes)


def small_fs(tmp_path, name: str, mib: int):
    """A small ext4 file system, loop-mounted (the mount's loop device goes with its umount)."""
    image, mnt = tmp_path / f"{name}.img", tmp_path / name
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image), f"{mib}M"], check=True)
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    return image, mnt


def unmount(mnt, image) -> None:
    """Unmount and wait until the file system is gone everywhere. A finished build's private
    namespace is torn down by the kernel a moment after its last process: until then its copy
    of the mount keeps the file system (and its loop device) alive, so the image must not be
    touched, and our own umount may find the target busy."""
    wait_for(lambda: subprocess.run(["umount", str(mnt)], capture_output=True).returncode == 0
             or not os.path.ismount(mnt), 60, f"{mnt} to unmount")
    wait_for(lambda: str(mnt) not in all_mount_points(), 60, f"{mnt} to leave every namespace")
    wait_for(lambda: not subprocess.run(["losetup", "-j", str(image)], capture_output=True,
                                        text=True).stdout.strip(), 60, f"the loop device of {image} to go")


def test_a_full_output_disk_fails_clearly_and_leaves_no_half_artifact(minimal_plan, recipes, tmp_path):
    name = "fullout"
    faulty_recipe(recipes, tmp_path, name, "full\n", disks=False)
    image, out = small_fs(tmp_path, "output", 160)
    try:
        env = dict(DISTONET_OUTPUT=str(out))
        proc = run(recipes, "build", name, env=env)
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
        wait_for(lambda: leftovers(Paths.default()) == [], 60, "the failed build's leftovers to vanish")
        assert not (out / name).exists()                                   # no build appeared
        assert not [p for p in out.rglob("*") if ".tmp" in p.name]        # no half-written artifact
    finally:
        unmount(out, image)
    again = run(recipes, "build", name)                                    # room again: it completes
    assert again.returncode == 0, again.stderr[-3000:]
    assert verify(Paths.default(), recipes=[name]).sound
    distonet("clean", name, recipes=recipes)


@pytest.mark.nightly
def test_a_full_stage_store_fails_clearly_then_completes_once_it_has_room(recipes, tmp_path):
    image, mnt = small_fs(tmp_path, "cachefs", 120)
    cache = sharing_downloads(mnt / "cache")   # below the mount point, which is no leftover of a build
    try:
        env = dict(DISTONET_CACHE=str(cache), DISTONET_OUTPUT=str(tmp_path / "output"))
        proc = run(recipes, "build", "minimal", env=env)
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        small = Paths(recipes=recipes, cache=cache, output=tmp_path / "output")
        wait_for(lambda: leftovers(small) == [], 60, "the failed build's leftovers to vanish")
        assert not list(small.stages.glob("*.partial-*"))
        # verify in a process of its own: in ours it would move pytest into a private mount
        # namespace holding a copy of this mount, which would then outlive our umount
        checked = run(recipes, "verify", env=env)
        assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
        # room: the file system grown (offline: this kernel refuses an online resize that needs
        # more group descriptors than mkfs reserved), mounted again where it was
        unmount(mnt, image)
        subprocess.run(["truncate", "-s", "3G", str(image)], check=True)
        subprocess.run(["e2fsck", "-fy", str(image)], capture_output=True)
        subprocess.run(["resize2fs", str(image)], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
        again = run(recipes, "build", "minimal", env=env)
        assert again.returncode == 0, again.stderr[-3000:]
        checked = run(recipes, "verify", env=env)
        assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]
        wait_for(lambda: leftovers(small) == [], 60, "the build's leftovers to vanish")
    finally:
        if os.path.ismount(mnt):
            unmount(mnt, image)


def test_a_hung_command_is_ended_by_its_timeout(minimal_plan, recipes, tmp_path):
    name = "hung"
    hook = recipes.parent / "hooks/chroot/hang/post-install/10-hang"
    hook.parent.mkdir(parents=True)
    hook.write_text("#!/bin/sh\nsleep 100000\n")
    hook.chmod(0o755)
    (recipes / f"{name}.yaml").write_text(f"extends: minimal\nhostname: {name}\nhooks: [hang]\n"
                                          "replace: [outputs]\noutputs: {kernel: {}}\n")
    proc = run(recipes, "build", name, env={"DISTONET_COMMAND_TIMEOUT": "10"})
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "timed out after 10s and was killed" in proc.stderr
    wait_for(lambda: leftovers(Paths.default()) == [], 60, "the hung build's leftovers to vanish")
    hook.write_text("#!/bin/sh\ntrue\n")                                   # fixed: the next run completes
    again = run(recipes, "build", name)
    assert again.returncode == 0, again.stderr[-3000:]
    distonet("clean", name, recipes=recipes)


def state(pid: int) -> str:
    """The process's state letter (T stopped, Z a zombie), '' if it is gone."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def stopped(proc) -> bool:
    return state(proc.pid) == "T"


def publish_with_the_share_going_away(tmp_path, spec: str, stop_server, start_server, extra=()):
    """Publish a small build; when the first files are on the share (the `stop` fault), the
    server goes away; the publish then fails with a clear error and leaves no build on the
    share; with the server back, the next publish completes."""
    from tests.integration.test_publish_shares import small_build
    out = small_build(tmp_path / "build")
    env = dict(os.environ, DISTONET_FAULT="publish:node:copied:stop")
    argv = [sys.executable, "-c", "import pathlib, sys\nfrom distonet.errors import report\n"
            "from distonet.publish import publish\ntry:\n    publish(pathlib.Path(sys.argv[1]), sys.argv[2], "
            "force=True, ssh_options=tuple(sys.argv[3:]))\nexcept Exception as exc:\n    sys.exit(report(exc))",
            str(out), spec, *extra]
    proc = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_for(lambda: stopped(proc) or proc.poll() is not None, 120, "the publish to reach the share")
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        stop_server()
        os.kill(proc.pid, signal.SIGCONT)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    start_server()
    return out, err


@pytest.mark.nightly
def test_the_ssh_share_going_away_mid_publish(tmp_path, sshd):
    from distonet.publish import publish
    port, options = sshd
    share = tmp_path / "remote"
    spec = f"ssh://root@127.0.0.1:{port}{share}"
    config = tmp_path / "ssh" / "sshd_config"
    servers = []

    def stop_server():
        pid = int((tmp_path / "ssh" / "sshd.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: state(pid) in ("", "Z"), 30, "sshd to stop")     # (the fixture reaps it)

    def start_server():
        servers.append(subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                                        stderr=subprocess.DEVNULL))
        wait_for(lambda: subprocess.run(["ssh", "-p", str(port), *options, "root@127.0.0.1", "true"],
                                        capture_output=True).returncode == 0, 30, "sshd to start again")
    try:
        out, err = publish_with_the_share_going_away(tmp_path, spec, stop_server, start_server, options)
        assert "Connection refused" in err or "connect" in err.lower(), err[-2000:]
        top = share / "node"
        assert not (top / "latest").exists() and not [p for p in top.iterdir() if not p.name.startswith(".")]
        r = publish(out, spec, ssh_options=options, force=True)      # the server is back: it completes
        assert os.readlink(top / "latest") == r.build_id
        subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=top / "latest", check=True)
    finally:
        for s in servers:
            s.terminate()
            s.wait(timeout=10)


@pytest.mark.nightly          # oras retries the lost registry for two minutes before it gives up
def test_the_registry_going_away_mid_publish(tmp_path, registry):
    from distonet.oci import fetch, share_from
    from distonet.publish import publish
    port, storage = registry
    spec = f"oci+http://127.0.0.1:{port}/lab/builds"
    config = tmp_path / "registry" / "config.yml"
    servers = []

    def stop_server():
        for pid in subprocess.run(["pgrep", "-f", f"docker-registry serve {config}"], capture_output=True,
                                  text=True).stdout.split():
            os.kill(int(pid), signal.SIGTERM)
        wait_for(lambda: subprocess.run(["pgrep", "-f", f"docker-registry serve {config}"],
                                        capture_output=True).returncode != 0, 30, "the registry to stop")

    def start_server():
        import urllib.request
        servers.append(subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL))

        def up():
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).status == 200
            except OSError:
                return False
        wait_for(up, 30, "the registry to start again")
    try:
        out, err = publish_with_the_share_going_away(tmp_path, spec, stop_server, start_server)
        assert "Traceback" not in err, err[-3000:]
        assert "127.0.0.1" in err, err[-2000:]                     # it names the registry it lost
        share = share_from(spec)
        client = share.client()
        with pytest.raises(Exception):                               # no `latest`: nothing was published
            client.get_manifest(client.get_container(share.ref("node", "latest")))
        r = publish(out, spec, force=True)                            # the registry is back: it completes
        got = fetch(share, "node", r.build_id, tmp_path / "fetched")
        subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=got, check=True)
    finally:
        for s in servers:
            s.terminate()
            s.wait(timeout=10)


@pytest.mark.nightly          # a package layer installed twice: CI keeps its minutes for the boots
def test_the_mirror_unreachable_mid_build(minimal_plan, recipes):
    """The plan has read the archive's state; then, in the package stage, apt cannot reach the
    mirror (its downloads go through a proxy that is gone). A clear error, nothing left, and
    with the mirror back the next build completes."""
    from distonet.boot.qemu import free_port
    name = "unreachable"
    (recipes / f"{name}.yaml").write_text(f"extends: minimal\nhostname: {name}\npackages: {{late: [sl]}}\n"
                                          "replace: [outputs]\noutputs: {kernel: {}}\n")
    for deb in (minimal_plan.paths.cache / "apt-archives").glob("sl_*.deb"):
        deb.unlink()                                  # so that apt must download it
    dead = f"http://127.0.0.1:{free_port()}"          # nothing listens there
    proc = run(recipes, "build", name, env={"DISTONET_APT_PROXY": dead})
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "apt-get" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    wait_for(lambda: leftovers(Paths.default()) == [], 60, "the failed build's leftovers to vanish")
    plan = plan_for(name, recipes)
    key = plan.stage("packages.late").key
    assert not StageStore(plan.paths.stages).done(key)
    assert not list(plan.paths.stages.glob(f"{key[:32]}.partial-*"))
    again = run(recipes, "build", name)
    assert again.returncode == 0, again.stderr[-3000:]
    distonet("clean", name, recipes=recipes)


def killed_pull_then_every_stage_pulled(recipes, tmp_path, name, env, plan) -> None:
    """A fresh builder (its own stage store) killed in the middle of unpacking a pulled stage
    leaves no stage and nothing else; its next build pulls every stage, runs none, verifies."""
    fresh = tmp_path / "fresh"
    sharing_downloads(fresh / "cache")
    env = {**env, "DISTONET_CACHE": str(fresh / "cache"), "DISTONET_OUTPUT": str(fresh / "output")}
    killed = run(recipes, "build", name, env=env, fault="command:tar:kill")       # mid-unpack
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    store = Paths(recipes=recipes, cache=fresh / "cache", output=fresh / "output")
    wait_for(lambda: leftovers(store) == [], 60, "the killed pull's leftovers to vanish")
    assert not any(StageStore(store.stages).done(s.key) for s in plan.stages[:1])
    again = run(recipes, "build", name, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "pulled" in again.stderr and not re.search(r"^▶ (bootstrap|packages\S*) \[[0-9a-f]+\]$", again.stderr, re.M)
    assert verify(store).sound


@pytest.mark.nightly
def test_a_stage_cache_push_and_pull_killed_midway(minimal_plan, recipes, tmp_path):
    """A builder killed while it pushes a stage to the shared cache leaves no entry (the record
    is the commit); the next build pushes what it makes, sweeping the killed push's temporary
    file, and `push-stages` pushes the stage whose push was killed. A fresh builder killed in the middle of
    unpacking a pulled stage leaves no stage; its next build pulls every stage and runs none."""
    name = "cached"
    faulty_recipe(recipes, tmp_path, name, "cache\n")
    distonet("clean", name, recipes=recipes)                        # its stage made here, not left by a failed run
    shared = tmp_path / "stage-cache"
    env = {"DISTONET_STAGE_CACHE": str(shared)}
    proc = run(recipes, "build", name, env=env, fault="cache:push:overlay.f:kill")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    wait_for(lambda: leftovers(Paths.default()) == [], 60, "the killed build's leftovers to vanish")
    plan = plan_for(name, recipes)
    overlay_key = plan.stage("overlay.f").key
    assert not (shared / f"{overlay_key}.json").exists()           # no half entry counts
    rest = run(recipes, "build", name, env=env)                     # the stages after it, pushed as made
    assert rest.returncode == 0, rest.stderr[-3000:]
    pushed = run(recipes, "push-stages", name, "--cache", str(shared))   # and the one killed
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert all((shared / f"{s.key}.json").exists() for s in plan.stages)
    named = {f"{s.key}.json" for s in plan.stages} | {DirCache(shared).record(s.key)["file"] for s in plan.stages}
    assert sorted(p.name for p in shared.iterdir()) == sorted(named)   # the killed push's litter swept

    killed_pull_then_every_stage_pulled(recipes, tmp_path, name, env, plan)
    distonet("clean", name, recipes=recipes)


@pytest.mark.nightly
def test_an_oci_stage_cache_push_and_pull_killed_midway(minimal_plan, recipes, tmp_path, registry):
    """The same with a registry as the shared cache: a builder killed after the stage's blob is
    up and before its manifest leaves no entry (the tag is the commit) and no temporary tarball;
    the next `push-stages` pushes every stage; a fresh builder killed mid-unpack, then pulls all."""
    from distonet.stagecache import cache_for
    port, _ = registry
    name = "ocicached"
    faulty_recipe(recipes, tmp_path, name, "oci cache\n")
    distonet("clean", name, recipes=recipes)                        # its stage made here, not left by a failed run
    spec = f"oci+http://127.0.0.1:{port}/lab"
    env = {"DISTONET_STAGE_CACHE": spec}
    proc = run(recipes, "build", name, env=env, fault="cache:packed:overlay.f:kill")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    wait_for(lambda: leftovers(Paths.default()) == [], 60, "the killed build's leftovers to vanish")
    plan = plan_for(name, recipes)
    cache = cache_for(spec)
    assert not cache.has(plan.stage("overlay.f").key)               # the blob alone is no entry
    assert list(Paths.default().work.glob("push-*"))                # the killed push's tarball...
    rest = run(recipes, "build", name, env=env)                     # the stages after it, pushed as made
    assert rest.returncode == 0, rest.stderr[-3000:]
    assert "manifest unknown" not in rest.stderr                    # (oras' noise for an absent tag)
    assert not list(Paths.default().work.glob("push-*"))             # ...swept by the next push
    pushed = run(recipes, "push-stages", name, "--cache", spec)     # and the one killed
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert all(cache.has(s.key) for s in plan.stages)
    killed_pull_then_every_stage_pulled(recipes, tmp_path, name, env, plan)
    distonet("clean", name, recipes=recipes)
