"""Bit-identical rebuilds: `minimal` built again from nothing, in another stage store and output
folder, at another time, gives the same SHA-256 for every artifact as the session's build
(SOURCE_DATE_EPOCH from the archive state, clamped inode times, GUIDs from the recipe:
reproducible.py). Only the package downloads are shared: the archive state is the same."""

import json
import os
import subprocess
import sys

import pytest

from distonet import PROJECT_ROOT
from distonet.manifest import Manifest
from tests.integration.conftest import sharing_downloads

pytestmark = pytest.mark.integration


@pytest.mark.nightly
def test_a_cold_rebuild_elsewhere_gives_the_same_bytes(minimal_build, minimal_plan, tmp_path):
    again = build_elsewhere(minimal_plan.paths.recipes, "minimal", tmp_path, minimal_plan.paths.cache)
    cache = tmp_path / "cache"
    first = Manifest.load(minimal_plan.out_dir)
    if again.archive_state != first.archive_state:        # the archive moved since the session's build
        first = build_elsewhere(minimal_plan.paths.recipes, "minimal", tmp_path / "c", minimal_plan.paths.cache)
        assert first.archive_state == again.archive_state, "the archive moved twice during the test"
    assert again.build_id == first.build_id
    assert {a.path: a.sha256 for a in again.artifacts} == {a.path: a.sha256 for a in first.artifacts}, \
        json.dumps({a.path: a.sha256[:12] for a in again.artifacts})
    # every stage made again in the new store, none taken from the first
    assert all((cache / "stages" / s["key"][:32] / "stamp.json").exists() for s in again.stages)


def build_elsewhere(recipes, name: str, root, project_cache) -> Manifest:
    """`name` built from nothing in its own store and output folder (downloads shared)."""
    cache = sharing_downloads(root / "cache", project_cache)
    env = dict(os.environ, DISTONET_CACHE=str(cache), DISTONET_OUTPUT=str(root / "output"),
               DISTONET_RECIPES=str(recipes))
    proc = subprocess.run([sys.executable, "-m", "distonet", "build", name], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Manifest.load(root / "output" / name)


@pytest.mark.nightly
def test_every_output_kind_is_reproducible(minimal_plan, recipes, tmp_path):
    """hpc-node's netboot outputs and vm's hypervisor and live outputs in one recipe, built twice
    from nothing: every artifact the same (the site's CHAP secrets are inputs, shared)."""
    (recipes / "every.yaml").write_text("extends: [hpc-node, vm]\ndescription: every output kind\n")
    first = build_elsewhere(recipes, "every", tmp_path / "a", minimal_plan.paths.cache)
    again = build_elsewhere(recipes, "every", tmp_path / "b", minimal_plan.paths.cache)
    if again.archive_state != first.archive_state:        # the archive moved between them (it does,
        first = build_elsewhere(recipes, "every", tmp_path / "c", minimal_plan.paths.cache)   # a few times a day)
        assert first.archive_state == again.archive_state, "the archive moved twice during the test"
    kinds = {a.kind for a in first.artifacts}
    assert {"rootfs", "disk", "qcow2", "nfsroot", "ova", "iso", "squashfs", "sbom", "pxe"} <= kinds, kinds
    differ = {a.path for a in first.artifacts} ^ {a.path for a in again.artifacts}
    differ |= {a.path for a in first.artifacts for b in again.artifacts if a.path == b.path and a.sha256 != b.sha256}
    assert not differ, sorted(differ)
