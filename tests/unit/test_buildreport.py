"""The build report: the package diff (added, removed, upgraded with both versions, downgraded),
the security fixes read from the changelog entries between two versions (through an overlay
stack of stage trees, whiteouts and doc links included), the page and the index, escaped."""

import gzip
import os

from distonet import buildreport
from distonet.manifest import Artifact, BootRecord, Manifest

CHANGELOG = """openssl (3.0.15-1~deb12u1) bookworm-security; urgency=medium

  * New upstream release, fixing CVE-2024-5535 and CVE-2024-9143.

 -- Maintainer <m@example.org>  Mon, 28 Oct 2024 10:00:00 +0000

openssl (3.0.14-1~deb12u2) bookworm-security; urgency=medium

  * Fix for DSA-5764-1: CVE-2024-6119.

 -- Maintainer <m@example.org>  Mon, 02 Sep 2024 10:00:00 +0000

openssl (3.0.14-1~deb12u1) bookworm; urgency=medium

  * New upstream release (CVE-2024-0001 was fixed here, before the old build).

 -- Maintainer <m@example.org>  Mon, 01 Jul 2024 10:00:00 +0000
"""


def manifest(build_id, built_at, packages, boots=(("disk", "bios", True),)):
    return Manifest(recipe="node", build_id=build_id, built_at=built_at, distonet_version="0.1",
                    resolved_recipe={}, mirror="", archive_state="InRelease 2026-11-29", root_uuid="",
                    kernel_cmdline=[], stages=[{"name": "bootstrap", "kind": "bootstrap", "key": "k1", "seconds": 31.5},
                                               {"name": "packages.base", "kind": "packages", "key": "k2", "seconds": 12.25}],
                    outputs=[{"name": "disk", "key": "o1", "seconds": 4.5}],
                    packages=[{"name": n, "version": v} for n, v in packages],
                    artifacts=[Artifact("disk", "disk.raw", 3 << 30, "ab" * 32, "raw")],
                    boots=[BootRecord(a, f, ok, 41.2, "tcg", built_at) for a, f, ok in boots])


OLD = manifest("b1", "2026-11-28T02:00:00+00:00",
               [("openssl", "3.0.14-1~deb12u1"), ("zlib1g", "1:1.2.13.dfsg-1"), ("nano", "7.2-1"), ("tzdata", "2025a-1")])
NEW = manifest("b2", "2026-11-29T02:00:00+00:00",
               [("openssl", "3.0.15-1~deb12u1"), ("zlib1g", "1:1.2.13.dfsg-1"), ("htop", "3.2.2-2"),
                ("tzdata", "2024b-1")])


def test_the_diff_has_each_kind_of_change_with_both_versions():
    diff = buildreport.package_diff(NEW, OLD, lambda name: CHANGELOG if name == "openssl" else None)
    assert diff.previous == "b1" and not diff.empty
    assert [(c.name, c.new) for c in diff.added] == [("htop", "3.2.2-2")]
    assert [(c.name, c.old) for c in diff.removed] == [("nano", "7.2-1")]
    (up,) = diff.upgraded
    assert (up.name, up.old, up.new) == ("openssl", "3.0.14-1~deb12u1", "3.0.15-1~deb12u1")
    # the entries after the old version up to the new one: not CVE-2024-0001, fixed before
    assert up.advisories == ["CVE-2024-5535", "CVE-2024-9143", "DSA-5764-1", "CVE-2024-6119"]
    assert [(c.name, c.old, c.new) for c in diff.downgraded] == [("tzdata", "2025a-1", "2024b-1")]
    first = buildreport.package_diff(NEW, None)
    assert first.previous is None and first.empty
    unread = buildreport.package_diff(NEW, OLD, None).upgraded[0]
    assert unread.advisories == [] and unread.note == "changelog not in the image"


def test_changelogs_are_read_through_the_stage_layers(tmp_path):
    bottom, top = tmp_path / "bootstrap", tmp_path / "upper"
    for name, layer in (("openssl", bottom), ("libgone", bottom)):
        d = layer / "usr/share/doc" / name
        d.mkdir(parents=True)
        with gzip.open(d / "changelog.Debian.gz", "wt") as fh:
            fh.write(CHANGELOG)
    (top / "usr/share/doc").mkdir(parents=True)
    os.symlink("openssl", top / "usr/share/doc/libssl3")          # a doc folder that is another's
    os.symlink("/etc/shadow", top / "usr/share/doc/escape")       # absolute: read inside the image only
    (top / "usr/share/doc/libgone").mkdir()
    os.mknod(top / "usr/share/doc/libgone/changelog.Debian.gz", 0o600 | 0o020000, os.makedev(0, 0))  # whiteout
    read = buildreport.image_changelogs([top, bottom])
    assert "CVE-2024-5535" in read("openssl") and read("libssl3") == read("openssl")
    assert read("libgone") is None and read("escape") is None and read("absent") is None


def test_the_page_shows_the_diff_boots_artifacts_and_a_chart():
    diff = buildreport.package_diff(NEW, OLD, lambda name: CHANGELOG)
    page = buildreport.render_report(NEW, diff, signed=True)
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "stage packages.base" in page
    assert '<tr class="added"><td>added</td><td>htop</td><td></td><td>3.2.2-2</td>' in page
    assert "<td>3.0.14-1~deb12u1</td><td>3.0.15-1~deb12u1</td>" in page
    assert 'href="https://security-tracker.debian.org/tracker/CVE-2024-9143"' in page
    assert 'href="disk.raw"' in page and "3.0 GiB" in page and "SHA256SUMS.asc" in page
    assert 'id="boot-verdict">passed<' in page and "41.2" in page
    assert "<script" not in page and "src=" not in page and "<link" not in page   # nothing to fetch
    assert buildreport.render_report(NEW, diff, signed=True) == page               # the same bytes again
    hostile = manifest("b3", "2026-11-30T00:00:00", [("<script>alert(1)</script>", "1")])
    assert "<script>alert" not in buildreport.render_report(hostile, buildreport.package_diff(hostile, NEW))


def test_the_index_lists_builds_newest_first_and_marks_latest():
    failed = manifest("b0", "2026-11-27T00:00:00+00:00", [], boots=(("disk", "uefi", False),))
    page = buildreport.render_index("node", [OLD, failed, NEW], "b2")
    assert page.index('href="b2/report.html"') < page.index('href="b1/report.html"') < page.index('href="b0/report.html"')
    assert "b2</a> (latest)" in page and "FAILED" in page
    assert buildreport.previous([OLD, failed, NEW], NEW).build_id == "b1"
    assert buildreport.previous([NEW], NEW) is None
