"""Integration tests: real builds with mmdebstrap, real boots in QEMU. One build of `minimal`
is shared by all of them (the build is cached, so it is made once per machine)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distonet import PROJECT_ROOT
from distonet.ledger import mounts_below
from distonet.paths import Paths


def doit(*args, recipes: Path | None = None, check=True, timeout=3600):
    env = dict(os.environ)
    if recipes is not None:
        env["DISTONET_RECIPES"] = str(recipes)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "doit", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    proc.seconds = time.monotonic() - start
    if check and proc.returncode != 0:
        raise AssertionError(f"doit {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


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


def leftovers(paths: Paths) -> list[str]:
    """What a build could leave on the host: mounts, loop devices, processes in its trees."""
    mounts = mounts_below(str(paths.cache.resolve())) + mounts_below(str(paths.output.resolve()))
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout.splitlines()
    return mounts + [l for l in loops if str(PROJECT_ROOT) in l] + processes_inside(paths.cache.resolve())


@pytest.fixture(scope="session")
def project_paths() -> Paths:
    return Paths.default()


@pytest.fixture(autouse=True)
def no_leaks(request, project_paths):
    yield
    if "integration" in request.keywords:
        assert leftovers(project_paths) == [], "a build or test left mounts or loop devices behind"


@pytest.fixture(scope="session")
def minimal_build(project_paths):
    """Build `minimal` once for the session through the real command line."""
    proc = doit("build", "recipe=minimal")
    return proc


@pytest.fixture(scope="session")
def minimal_plan(minimal_build):
    from distonet.build import load_plan
    return load_plan("minimal")
