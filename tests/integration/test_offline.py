"""An unchanged recipe rebuilds from scratch without the network: packages and package lists
come from the shared caches, the archive state from the InRelease copy seen last."""

import os
import shutil
import subprocess
import sys

import pytest

from distonet import PROJECT_ROOT
from tests.integration.conftest import sharing_downloads

pytestmark = pytest.mark.integration


def test_cold_rebuild_offline_from_the_package_caches(minimal_plan):
    main = minimal_plan.paths.cache
    assert any((main / "apt-lists").glob("*/*_Packages*")), "the first build keeps the package lists"
    root = main / "offline-test"
    shutil.rmtree(root, ignore_errors=True)
    sharing_downloads(root / "cache", main)
    env = dict(os.environ, DISTONET_CACHE=str(root / "cache"), DISTONET_OUTPUT=str(root / "output"))
    # A network namespace of our own has no route anywhere: the build is really offline.
    proc = subprocess.run(["unshare", "--net", "--", sys.executable, "-m", "doit",
                           "--db-file", str(root / "doit.db"), "build", "recipe=minimal"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "unreachable" in proc.stderr  # it did try, and fell back to the copy seen last
    rows = [l.split() for l in proc.stderr.splitlines() if l.split() and l.split()[-1] in ("run", "cached")]
    assert rows and all(r[-1] == "run" for r in rows)  # every stage really ran, offline
    manifest = (root / "output/minimal/manifest.json").read_text()
    assert '"kind": "disk"' in manifest
    shutil.rmtree(root)
