"""`doit nightly` as a build host's timer runs it: two recipes built, boot-tested and published,
then a change to their common parent (one package more) and a second run; the share holds two
builds per recipe, `latest` on the newer, SHA256SUMS that sha256sum accepts, and a report page
that Debian's chromium renders with the package diff between the two. A third run finds nothing
to do; a run while another holds the lock does nothing and says so (exit 75).

The two recipes boot to systemd's welcome on the serial console (their recipe's boot.marker):
what this proves is the nightly pipeline; login and services are proven by the boot tests of
test_minimal.py."""

import fcntl
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import doit

pytestmark = pytest.mark.integration

BASE = ("extends: minimal\n{packages}boot: {{firmware: [bios], marker: 'Welcome to .{{0,12}}Debian'}}\n"
        "replace: [outputs, boot.firmware]\noutputs: {{rootfs: {{extent_mib: 4, free_mib: 64}}, kernel: {{}}, disk: {{esp_mib: 32}}}}\n")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is missing: ./setup.sh installs it"
    return found


def browse(page: Path, out: Path) -> str:
    """Render the page in headless chromium: the DOM it built, and a screenshot in `out`."""
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             f"--user-data-dir={out.parent / 'chromium-profile'}"]
    dom = subprocess.run([chromium(), *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    subprocess.run([chromium(), *flags, "--window-size=1200,1400", f"--screenshot={out}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    return dom


def not_blank(png: Path) -> bool:
    from PIL import Image
    with Image.open(png) as img:
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    return colours is not None and len(colours) > 20      # text, table rules, the chart's bars


@pytest.mark.nightly   # (three minutes: CI keeps its minutes for the boots; the nightly job runs it)
def test_two_nightly_runs_leave_two_builds_per_recipe_and_a_report_of_the_diff(minimal_build, project_paths, tmp_path):
    from tests.conftest import RECIPES
    recipes = tmp_path / "recipes"
    shutil.copytree(RECIPES, recipes)
    (recipes / "night-base.yaml").write_text(BASE.format(packages=""))
    for name in ("night-a", "night-b"):
        (recipes / f"{name}.yaml").write_text(f"extends: night-base\nhostname: {name}\n")
    share = tmp_path / "share"
    args = ("recipe=night-a,night-b", f"share={share}")
    try:
        first = doit("-n", "2", "nightly", *args, recipes=recipes)
        assert "nightly: 2 published, 0 unchanged, 0 failed, of 2" in first.stderr, first.stderr[-3000:]
        (recipes / "night-base.yaml").write_text(BASE.format(packages="packages: {nightly: [hello]}\n"))
        second = doit("nightly", *args, recipes=recipes)
        assert "nightly: 2 published" in second.stderr, second.stderr[-3000:]

        for name in ("night-a", "night-b"):
            top = share / name
            builds = sorted(p.name for p in top.iterdir() if p.is_dir() and not p.is_symlink() and p.name[0] != ".")
            assert len(builds) == 2, builds
            manifests = {b: json.loads((top / b / "manifest.json").read_text()) for b in builds}
            newest = max(builds, key=lambda b: manifests[b]["built_at"])
            assert os.readlink(top / "latest") == newest
            for b in builds:
                subprocess.run(["sha256sum", "--quiet", "--strict", "-c", "SHA256SUMS"], cwd=top / b, check=True)
                assert all(x["reached"] for x in manifests[b]["boots"]) and manifests[b]["boots"]
            hello = next(p["version"] for p in manifests[newest]["packages"] if p["name"] == "hello")
            dom = browse(top / "latest/report.html", tmp_path / f"{name}.png")
            assert re.search(rf'<tr class="added"><td>added</td><td>hello</td><td></td><td>{re.escape(hello)}</td>', dom)
            older = min(builds, key=lambda b: manifests[b]["built_at"])
            assert f"Package changes since build {older}" in dom and "<svg" in dom
            assert not_blank(tmp_path / f"{name}.png")
            index = (top / "index.html").read_text()
            assert f"{newest}</a> (latest)" in index and f'href="{older}/report.html"' in index
        summary = json.loads((project_paths.output / "nightly-summary.json").read_text())
        assert summary["ok"] and {r["recipe"] for r in summary["recipes"]} == {"night-a", "night-b"}

        third = doit("nightly", *args, recipes=recipes)       # nothing changed: nothing built, booted or copied
        assert "nightly: 0 published, 2 unchanged, 0 failed, of 2" in third.stderr, third.stderr[-3000:]
        assert "boot disk" not in third.stderr

        with open(project_paths.cache / "nightly.lock", "a+") as held:   # another run holds the lock
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            busy = doit("nightly", *args, recipes=recipes, check=False)
        assert busy.returncode == 75 and "another nightly run holds" in busy.stderr
    finally:
        for name in ("night-a", "night-b"):
            doit("clean", f"recipe={name}", recipes=recipes, check=False)
