"""Integration tests: real builds with mmdebstrap, real boots in QEMU. One build of `minimal`
is shared by all of them (the build is cached, so it is made once per machine)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distonet import PROJECT_ROOT
from distonet.paths import Paths


def run_cli(*args, recipes: Path | None = None, check=True, timeout=3600, tool="distonet", **popen):
    """`distonet ARGS` (tool="distonet") or `doit ARGS` (tool="doit"), as a user runs them."""
    env = dict(os.environ)
    if recipes is not None:
        env["DISTONET_RECIPES"] = str(recipes)
    module = "distonet" if tool == "distonet" else "doit"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, **popen)
    proc.seconds = time.monotonic() - start
    if check and proc.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def doit(*args, **kw):
    return run_cli(*args, tool="doit", **kw)


def distonet(*args, **kw):
    return run_cli(*args, tool="distonet", **kw)


def every_mount_table() -> set[str]:
    """The lines of every process's mount table (each namespace's, once per process): builds
    mount in private namespaces, which the test's own /proc/self/mountinfo cannot see."""
    lines = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                with open(proc / "mountinfo") as fh:
                    lines |= set(fh)
            except OSError:
                continue
    return lines


def all_mount_points() -> set[str]:
    """Mount points in every process's mount namespace."""
    return {line.split()[4].encode().decode("unicode_escape") for line in every_mount_table()}


def processes_inside(path: Path) -> list[str]:
    """Processes whose root or working directory is below `path` (a chroot still in use)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            for link in ("root", "cwd"):
                try:
                    target = os.readlink(proc / link)
                except OSError:
                    continue
                if target.startswith(str(path)):
                    found.append(f"pid {proc.name} {link}={target}")
    return found


# Every process this test session starts, and everything they start (servers that daemonize
# too), carries this in its environment: a process left running is found by it, wherever it
# was reparented, and nothing else on the machine (a CI runner's own helpers) is mistaken for one.
SESSION_MARK = "DISTONET_TEST_SESSION=" + os.environ.setdefault("DISTONET_TEST_SESSION", f"{os.getpid()}-{time.time_ns()}")


def our_processes() -> dict[tuple[str, str], str]:
    """Live processes of this test session, kernel threads aside: (pid, start time) -> its name
    and network namespace."""
    mark = SESSION_MARK.encode()
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or proc.name == str(os.getpid()):
            continue
        try:
            if mark not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            stat = (proc / "stat").read_text(errors="replace")
            netns = os.readlink(proc / "ns" / "net")
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if fields and fields[0] != "Z":
            found[(proc.name, fields[19])] = f"{stat[stat.find('(') + 1:stat.rfind(')')]} (pid {proc.name}, {netns})"
    return found


def kept_namespaces() -> set[str]:
    """Namespaces that outlive every process: those kept by name (`ip netns add`), and any kept
    by a bind mount of its nsfs file, in any process's mount table. (One held only by an open
    descriptor lives as long as its process, which the process check finds.)"""
    try:
        kept = {f"network namespace {n}" for n in os.listdir("/run/netns")}
    except OSError:
        kept = set()
    return kept | {f"namespace kept at {line.split()[4]} ({line.split()[3]})"
                   for line in every_mount_table() if " - nsfs " in line}


def leftovers(paths: Paths) -> list[str]:
    """What a build could leave on the host: mounts (in any namespace), loop devices of our
    files, processes inside our trees."""
    roots = [str(paths.cache.resolve()), str(paths.output.resolve())]
    mounts = sorted(m for m in all_mount_points() if any(m == r or m.startswith(r + "/") for r in roots))
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout.splitlines()
    return mounts + [l for l in loops if str(PROJECT_ROOT) in l] + processes_inside(paths.cache.resolve())


@pytest.fixture(scope="session")
def project_paths() -> Paths:
    return Paths.default()


@pytest.fixture(autouse=True)
def no_leaks(request, project_paths):
    before, netns = set(our_processes()), kept_namespaces()

    def left():
        born = [name for key, name in our_processes().items() if key not in before]
        return leftovers(project_paths) + sorted(kept_namespaces() - netns) + [f"process {p}" for p in born]
    yield
    if "integration" in request.keywords:
        # A killed build's namespace goes with its last process: give the kernel a moment.
        end = time.monotonic() + 30
        while left() and time.monotonic() < end:
            time.sleep(0.5)
        assert left() == [], "a build or test left mounts, loop devices, namespaces or processes behind"


@pytest.fixture(scope="session", autouse=True)
def every_build_verified(request, project_paths):
    """At the end of a session that built images: every build it left in output/ is sound and
    clean (`distonet verify`: digests, and hygiene.py's checks of the image and its artifacts)."""
    started = time.time()
    yield
    if not any("integration" in item.keywords for item in request.session.items):
        return
    from distonet.verify import verify
    made = [m.parent.name for m in project_paths.output.glob("*/manifest.json") if m.stat().st_mtime >= started]
    if made:
        report = verify(project_paths, recipes=made)
        assert report.sound, "builds of this session are unsound or leak:\n" + "\n".join(report.problems)


@pytest.fixture(scope="session")
def minimal_build(project_paths):
    """Build `minimal` once for the session through doit, as the README documents."""
    return doit("build", "recipe=minimal")


@pytest.fixture(scope="session")
def minimal_plan(minimal_build):
    from distonet.pipeline import load_plan
    return load_plan("minimal")


def plan_for(name, recipes, check=True):
    from distonet.pipeline import load_plan
    load_plan.cache_clear()  # the recipe file may have changed since
    paths = Paths.default()
    return load_plan(name, Paths(recipes=recipes, search=(recipes, paths.recipes),
                                 cache=paths.cache, output=paths.output), offline_ok=not check)


def summary_states(stderr: str) -> dict[str, str]:
    """{step: run|cached|pulled|missing} from the end-of-build table."""
    rows = {}
    for line in stderr.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-1] in ("run", "cached", "missing", "pulled"):
            rows[" ".join(parts[:-2]) if parts[0] == "output" else parts[0]] = parts[-1]
    return rows


def sharing_downloads(cache: Path, source: Path | None = None) -> Path:
    """A stage cache of its own at `cache` that shares `source`'s downloads (packages, lists,
    the archive's state), not its stages: a build there starts from nothing but the network."""
    source = source or Paths.default().cache
    cache.mkdir(parents=True, exist_ok=True)
    for shared in ("apt-archives", "apt-lists", "archive"):
        if (source / shared).exists():
            os.symlink(source / shared, cache / shared)
    return cache


def wait_for(predicate, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
