import hashlib
import json

import pytest

from distonet import ledger as ledger_mod
from distonet.deploy import copy_verify, deploy_lvm
from distonet.errors import BuildError
from distonet.hostapt import parse_sources, pick_mirror
from distonet.ledger import Ledger, recover
from distonet.plan import make_plan
from distonet.recipe import load_recipe
from distonet.run import RecordingRunner
from distonet.stages.bootstrap import bootstrap_argv
from tests.conftest import write


def plan_of(name, paths):
    return make_plan(load_recipe(name, paths.recipes), paths, mirror="http://archive.invalid/debian", archive="A")


def test_mmdebstrap_argv_uses_the_package_cache(paths, tmp_path):
    argv = bootstrap_argv(plan_of("minimal", paths), tmp_path / "tree")
    assert argv[:2] == ["mmdebstrap", "--mode=root"]
    assert "--variant=minbase" in argv and "--architectures=amd64" in argv
    assert f"--setup-hook=sync-in {paths.apt_archives} /var/cache/apt/archives/" in argv
    assert argv[-3:] == ["trixie", str(tmp_path / "tree"), "http://archive.invalid/debian"]


def test_debootstrap_argv(paths, tmp_path):
    write(paths.recipes, "d", "extends: minimal\ndistribution: {bootstrap: debootstrap, suite: bookworm}\n")
    argv = bootstrap_argv(plan_of("d", paths), tmp_path / "t")
    assert argv[0] == "debootstrap" and f"--cache-dir={paths.apt_archives}" in argv
    assert argv[-3:] == ["bookworm", str(tmp_path / "t"), "http://archive.invalid/debian"]


def test_ledger_undoes_in_reverse_and_forgets(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_mod, "_is_mounted", lambda t: True)
    runner = RecordingRunner({"losetup --find": "/dev/loop7\n"})
    with Ledger(tmp_path / "ledger", runner) as led:
        led.mount(["mount", "-t", "proc", "proc", "/x/proc"], "/x/proc")
        dev = led.loop("/x/img", partitions=True)
        assert dev == "/dev/loop7"
        assert json.loads(led.path.read_text())["entries"][1]["device"] == "/dev/loop7"
    undo = runner.calls[3:]
    assert undo == [("partx", "-d", "/dev/loop7"), ("losetup", "-d", "/dev/loop7"), ("umount", "-R", "/x/proc")]
    assert list((tmp_path / "ledger").glob("*.json")) == []


def test_ledger_undoes_on_error(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_mod, "_is_mounted", lambda t: True)
    runner = RecordingRunner()
    with pytest.raises(RuntimeError):
        with Ledger(tmp_path, runner) as led:
            led.mount(["mount", "a", "/m"], "/m")
            raise RuntimeError("boom")
    assert runner.calls[-1] == ("umount", "-R", "/m")


def test_recover_undoes_what_a_dead_process_left(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_mod, "_is_mounted", lambda t: True)
    state = {"pid": 999999999, "start": "1", "entries": [
        {"kind": "mount", "target": "/m1"}, {"kind": "mount", "target": "/m1/proc"}]}
    (tmp_path / "999999999-dead.json").write_text(json.dumps(state))
    runner = RecordingRunner()
    assert recover(tmp_path, runner) == 2
    assert runner.calls == [("umount", "-R", "/m1/proc"), ("umount", "-R", "/m1")]
    assert not list(tmp_path.glob("*.json"))


def test_recover_leaves_a_live_process_alone(tmp_path):
    import os
    state = {"pid": os.getpid(), "start": ledger_mod._start_time(os.getpid()),
             "entries": [{"kind": "mount", "target": "/m"}]}
    (tmp_path / "live.json").write_text(json.dumps(state))
    runner = RecordingRunner()
    assert recover(tmp_path, runner) == 0 and runner.calls == []


def test_parse_sources_both_formats():
    one = "deb http://a.invalid/debian bookworm main\ndeb [arch=amd64] http://b.invalid/x stable main\n# deb http://c/ x\n"
    assert parse_sources(one, False) == [("http://a.invalid/debian", ["bookworm"]), ("http://b.invalid/x", ["stable"])]
    d822 = "Types: deb\nURIs: http://a.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n" \
           "Types: deb\nURIs: http://a.invalid/debian-security\nSuites: bookworm-security\n"
    entries = parse_sources(d822, True)
    assert pick_mirror(entries, "bookworm") == "http://a.invalid/debian"
    assert pick_mirror([("http://x.invalid/other", ["nodistro"]), ("http://m.invalid/debian/", ["sid"])], "bookworm") == "http://m.invalid/debian"
    assert pick_mirror([("http://x.invalid/other", ["nodistro"])], "bookworm") is None


def make_manifest(tmp_path, data: bytes):
    img = tmp_path / "rootfs.img"
    img.write_bytes(data)
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": [
        {"kind": "rootfs", "path": "rootfs.img", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]}))
    return tmp_path / "manifest.json", img


def test_deploy_lvm_command_sequence(tmp_path, monkeypatch):
    manifest, img = make_manifest(tmp_path, b"x" * 8192)
    copied = []
    monkeypatch.setattr("distonet.deploy.copy_verify", lambda *a, **k: copied.append(a[:4]))
    runner = RecordingRunner({"blockdev": "8192\n"})
    target = deploy_lvm(manifest, "vg0", "node1", runner)
    assert runner.calls[0] == ("lvcreate", "--yes", "--wipesignatures", "y", "--size", "8192b", "--name", "node1", "vg0")
    assert runner.calls[1] == ("blockdev", "--getsize64", "/dev/vg0/node1")
    assert str(target) == "/dev/vg0/node1" and copied[0][1] == target and copied[0][2] == 8192


def test_deploy_lvm_refuses_a_wrong_sized_lv(tmp_path):
    manifest, _ = make_manifest(tmp_path, b"x" * 8192)
    with pytest.raises(BuildError, match="extent"):
        deploy_lvm(manifest, "vg0", "n", RecordingRunner({"blockdev": "12288\n"}))


def test_copy_verify_against_a_plain_file(tmp_path):
    manifest, img = make_manifest(tmp_path, bytes(range(256)) * 64)
    target = tmp_path / "lv"
    target.write_bytes(b"\xff" * (len(img.read_bytes()) + 4096))  # an LV can be larger
    data = json.loads(manifest.read_text())["artifacts"][0]
    copy_verify(img, target, data["size"], data["sha256"])
    assert target.read_bytes()[: data["size"]] == img.read_bytes()
    with pytest.raises(BuildError, match="does not match"):
        copy_verify(img, target, data["size"], "0" * 64)


def test_archive_state_uses_the_last_copy_offline(tmp_path):
    from distonet.errors import BuildError
    from distonet.hostapt import archive_state
    mirror = tmp_path / "mirror"
    (mirror / "dists/trixie").mkdir(parents=True)
    (mirror / "dists/trixie/InRelease").write_text("Origin: Debian\nDate: 1\n")
    url = f"file://{mirror}"
    first = archive_state(url, "trixie", tmp_path / "cache")
    assert first == hashlib.sha256(b"Origin: Debian\nDate: 1\n").hexdigest()
    (mirror / "dists/trixie/InRelease").write_text("Origin: Debian\nDate: 2\n")
    assert archive_state(url, "trixie", tmp_path / "cache") != first  # a changed archive changes keys
    second = archive_state(url, "trixie", tmp_path / "cache")
    (mirror / "dists/trixie/InRelease").unlink()  # "offline"
    assert archive_state(url, "trixie", tmp_path / "cache") == second
    with pytest.raises(BuildError, match="cannot read"):
        archive_state(url, "sid", tmp_path / "cache")


def test_mmdebstrap_reuses_saved_lists_and_skips_update(paths, tmp_path):
    plan = plan_of("minimal", paths)
    argv = bootstrap_argv(plan, tmp_path / "t", lists=tmp_path / "lists")
    assert "--skip=update" in argv and f"--setup-hook=sync-in {tmp_path / 'lists'} /var/lib/apt/lists/" in argv
    argv = bootstrap_argv(plan, tmp_path / "t", save_lists=tmp_path / "save")
    assert "--skip=update" not in argv and f"--customize-hook=sync-out /var/lib/apt/lists {tmp_path / 'save'}" in argv
