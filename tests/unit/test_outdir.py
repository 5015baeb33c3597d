"""The output directory as one transaction: a changed file is noticed, unchanged outputs are
carried over, and the new set with its manifest replaces the old one in one step."""

import json
import os

import pytest

from distonet import actions, outdir
from distonet.errors import BuildError
from distonet.manifest import SUMS, Artifact, Manifest
from distonet.outputs import REGISTRY
from distonet.store import StageStore
from tests.helpers import plan_of, write


def fake_stamps(plan):
    store = StageStore(plan.paths.stages)
    for s in plan.stages:
        partial = store.begin(s.key)
        store.commit(s.key, partial, {"stage": s.name, "seconds": 1.0, "started": 0,
                                      "packages": [{"name": "p", "version": "1"}]})


def fake_output(plan, name, content: bytes, where=None):
    d = where or outdir.staging(plan.out_dir)
    d.mkdir(parents=True, exist_ok=True)
    arts = []
    for f in REGISTRY[name].files(None):
        (d / f).write_bytes(content + f.encode())
        arts.append(Artifact.of(name, d / f, d))
    outdir.write_state(d, name, plan.output(name).key, 0.0, 0.5, arts)


def build_all(plan, content=b"v1"):
    for o in plan.outputs:
        if not actions.output_current(plan, o.name):
            fake_output(plan, o.name, content)
    actions.commit(plan)


def test_commit_swaps_in_a_complete_set_with_manifest_and_sums(paths):
    plan = plan_of("minimal", paths)
    fake_stamps(plan)
    build_all(plan)
    out = plan.out_dir
    m = Manifest.load(out)
    assert m.build_id == plan.build_id and m.format_version == 1
    assert {a.path for a in m.artifacts} == {"rootfs.img", "disk.raw", "disk.qcow2", "vmlinuz", "initrd.img",
                                             "sbom.spdx.json"}
    sums = (out / SUMS).read_text().splitlines()
    assert len(sums) == 6 and all(len(line.split("  ")[0]) == 64 for line in sums)
    assert not outdir.staging(out).exists()
    assert actions.manifest_current(plan)
    assert m.resolved_recipe["access"]["root_password_hash"] is None


def test_an_edited_artifact_is_noticed_and_only_it_is_remade(paths):
    plan = plan_of("minimal", paths)
    fake_stamps(plan)
    build_all(plan)
    out = plan.out_dir
    kernel_inode = (out / "vmlinuz").stat().st_ino
    with open(out / "disk.qcow2", "ab") as fh:  # booted without snapshot=on, say
        fh.write(b"changed")
    assert not actions.output_current(plan, "qcow2") and actions.output_current(plan, "kernel")
    assert not actions.manifest_current(plan)
    build_all(plan, b"v2")
    m = Manifest.load(out)
    assert (out / "disk.qcow2").read_bytes() == b"v2disk.qcow2"
    assert (out / "vmlinuz").stat().st_ino == kernel_inode  # carried over, not copied
    assert {a.path: a.sha256 for a in m.artifacts}["disk.qcow2"] == Artifact.of("q", out / "disk.qcow2", out).sha256


def test_an_interrupted_build_leaves_the_previous_set_whole(paths):
    plan = plan_of("minimal", paths)
    fake_stamps(plan)
    build_all(plan)
    before = {p.name: p.read_bytes() for p in plan.out_dir.iterdir() if p.is_file()}
    write(paths.recipes, "minimal", (paths.recipes / "minimal.yaml").read_text().replace("free_mib: 256", "free_mib: 300"))
    plan2 = plan_of("minimal", paths)
    fake_output(plan2, "rootfs", b"new")  # ... and the build is killed before its manifest
    assert {p.name: p.read_bytes() for p in plan.out_dir.iterdir() if p.is_file()} == before
    assert Manifest.load(plan.out_dir).build_id == plan.build_id
    build_all(plan2, b"v3")  # the next run completes, reusing the rootfs made before the kill
    assert (plan2.out_dir / "rootfs.img").read_bytes() == b"newrootfs.img"


def test_commit_refuses_when_an_output_is_missing(paths):
    plan = plan_of("minimal", paths)
    fake_stamps(plan)
    fake_output(plan, "rootfs", b"x")
    with pytest.raises(BuildError, match="output .* is not built"):
        actions.commit(plan)
    assert not plan.out_dir.exists()


def test_exchange_swaps_two_directories(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    (tmp_path / "b" / "x").write_text("b")
    outdir.exchange(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "a" / "x").read_text() == "b" and (tmp_path / "b" / "x").read_text() == "a"


def test_unreadable_manifest_stops_prune_instead_of_guessing(paths):
    (paths.output / "r").mkdir(parents=True)
    (paths.output / "r" / "manifest.json").write_text("{broken")
    with pytest.raises(BuildError, match="unreadable manifest"):
        actions.stages_in_use(paths.output)


def test_an_output_hashed_in_another_process_can_be_read_but_is_not_yet_made(paths):
    """doit -P process: disk is made in one worker and hashed there; qcow2, in the other worker,
    reads disk.raw at once instead of waiting for the digest. The output is not current and the
    build cannot commit until the digests are in."""
    import subprocess
    import sys

    from distonet import current

    plan = plan_of("minimal", paths)
    fake_stamps(plan)
    nxt = outdir.staging(plan.out_dir)
    nxt.mkdir(parents=True)
    (nxt / "disk.raw").write_bytes(b"disk")
    art = Artifact("disk", "disk.raw", 4, "")
    outdir.write_state(nxt, "disk", plan.output("disk").key, 0.0, 0.5, [art], hashing=True)
    # the other process, still hashing, holds the output's lock
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys
from pathlib import Path
from distonet import outdir
with outdir.locked(Path({str(plan.out_dir)!r}), "disk"):
    print("held", flush=True)
    sys.stdin.read()
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    try:
        assert holder.stdout.readline().strip() == "held"
        where, arts = current.made(plan, "disk", wait=True)        # does not wait for the lock
        assert where == nxt and [a.path for a in arts] == ["disk.raw"]
        assert not current.output_current(plan, "disk")             # doit would make it again
        assert outdir.find(plan.out_dir, "disk", plan.output("disk").key) is None
    finally:
        holder.communicate("")
    outdir.write_state(nxt, "disk", plan.output("disk").key, 0.0, 0.5,
                       [Artifact.of("disk", nxt / "disk.raw", nxt)])
    assert current.output_current(plan, "disk")
    (nxt / "disk.raw").write_bytes(b"changed")                        # a stale unhashed state is not used
    outdir.write_state(nxt, "qcow2", plan.output("qcow2").key, 0.0, 0.5, [art], hashing=True)
    os.utime(nxt / "disk.raw", (1, 1))
    assert outdir.find_unhashed(plan.out_dir, "qcow2", plan.output("qcow2").key) is None


def test_the_replaced_set_is_removed_behind_the_build(tmp_path):
    """The swap returns with the new set current; the old one, moved to output/.trash/, goes in
    a process of its own, which also takes what an earlier, killed removal left."""
    import time

    from distonet.host.run import run

    current, nxt = tmp_path / "minimal", outdir.staging(tmp_path / "minimal")
    for d, text in ((current, "old"), (nxt, "new")):
        d.mkdir()
        (d / "rootfs.img").write_text(text)
    left = outdir.trash_dir(current) / "minimal-0123456789ab"         # a killed removal's
    (left / "sub").mkdir(parents=True)
    other = outdir.trash_dir(current) / "minimal-extra-0123456789ab"  # another recipe's
    other.mkdir()
    assert outdir.in_trash(current) == [left]                          # clean takes only its own
    calls = []
    outdir.swap_in(current, lambda argv, **kw: (calls.append(argv), run(argv, **kw))[1])
    assert (current / "rootfs.img").read_text() == "new" and not nxt.exists()
    assert calls and calls[0][:3] == ["setsid", "--fork", "rm"]
    deadline = time.monotonic() + 10
    while outdir.in_trash(current) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outdir.in_trash(current) == []
    assert not left.exists() and not other.exists()                  # all is replaced builds


def test_clean_removes_a_replaced_set_still_in_the_trash(paths):
    plan = plan_of("minimal", paths)
    fake_stamps(plan)
    build_all(plan)
    stale = outdir.trash_dir(plan.out_dir) / "minimal-0123456789ab"
    stale.mkdir(parents=True)
    (stale / "rootfs.img").write_text("old")
    assert stale in actions.clean(plan, dry_run=True) and stale.exists()
    assert stale in actions.clean(plan)
    assert not stale.exists() and not plan.out_dir.exists()
