"""Publishing a real build (minimal) to a file share through both front ends: `doit publish
recipe=minimal share=PATH` and `distonet publish minimal --share PATH`."""

import json
import os
import subprocess

import pytest

from tests.integration.conftest import distonet, doit

pytestmark = pytest.mark.integration


def test_publish_minimal_to_a_file_share(minimal_build, project_paths, tmp_path):
    out = project_paths.recipe_output("minimal")
    m = json.loads((out / "manifest.json").read_text())
    booted = bool(m["boots"]) and all(b["reached"] for b in m["boots"])
    share = tmp_path / "share"
    first = doit("publish", "recipe=minimal", f"share={share}", check=False)
    if not booted:                       # never boot-tested here: refused, said why, nothing on the share
        assert first.returncode != 0 and "boot" in first.stderr and not (share / "minimal").exists()
        distonet("publish", "minimal", "--share", str(share), "--force")
    else:
        assert first.returncode == 0, first.stderr[-2000:]
    top = share / "minimal"
    assert os.readlink(top / "latest") == m["build_id"]
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=top / "latest", check=True)
    assert json.loads((top / "latest/manifest.json").read_text())["build_id"] == m["build_id"]
    # the sparse disk stays sparse on the share
    disk = top / "latest/disk.raw"
    assert disk.stat().st_blocks * 512 < disk.stat().st_size
    again = distonet("publish", "minimal", "--share", str(share), "--force")
    assert "already there" in again.stderr + again.stdout
