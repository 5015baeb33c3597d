"""The ledger: undo in reverse, on error, after a dead build; never touch a live or recycled pid."""

import json
import os
import subprocess

import pytest

from distonet.host import ledger as ledger_mod
from distonet.host.ledger import Ledger, recover, undo
from tests.recording import RecordingRunner


def test_ledger_undoes_in_reverse_and_forgets(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_mod, "_is_mounted", lambda t: True)
    runner = RecordingRunner()
    with Ledger(tmp_path / "ledger", runner) as led:
        led.mount(["mount", "-t", "proc", "proc", "/x/proc"], "/x/proc")
        led.mount(["mount", "-t", "sysfs", "sysfs", "/x/sys"], "/x/sys")
        assert [e["target"] for e in json.loads(led.path.read_text())["entries"]] == ["/x/proc", "/x/sys"]
    assert runner.calls[2:] == [("umount", "-R", "/x/sys"), ("umount", "-R", "/x/proc")]
    assert list((tmp_path / "ledger").glob("*.json")) == []


def test_ledger_undoes_on_error(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_mod, "_is_mounted", lambda t: True)
    runner = RecordingRunner()
    with pytest.raises(RuntimeError):
        with Ledger(tmp_path, runner) as led:
            led.mount(["mount", "a", "/m"], "/m")
            raise RuntimeError("boom")
    assert runner.calls[-1] == ("umount", "-R", "/m")


def test_every_entry_is_undone_when_the_state_cannot_be_saved(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_mod, "_is_mounted", lambda t: True)
    runner = RecordingRunner()
    led = Ledger(tmp_path, runner)
    led.__enter__()
    led.mount(["mount", "a", "/m1"], "/m1")
    led.mount(["mount", "b", "/m2"], "/m2")

    def full(*a):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(led, "_save", full)
    led.__exit__(None, None, None)
    assert [c for c in runner.calls if c[0] == "umount"] == [("umount", "-R", "/m2"), ("umount", "-R", "/m1")]


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
    state = {"pid": os.getpid(), "start": ledger_mod._start_time(os.getpid()),
             "entries": [{"kind": "mount", "target": "/m"}]}
    (tmp_path / "live.json").write_text(json.dumps(state))
    runner = RecordingRunner()
    assert recover(tmp_path, runner) == 0 and runner.calls == []


def test_recover_sets_an_unreadable_record_aside(tmp_path):
    (tmp_path / "1-x.json").write_text("{not json")
    assert recover(tmp_path, RecordingRunner()) == 0
    assert (tmp_path / "1-x.json.bad").exists()


def test_a_record_gone_between_listing_and_reading_is_passed_over(tmp_path, monkeypatch):
    """Found by four builds at once: a record's owner finished (or another build recovered it)
    just after this build listed the ledger directory."""
    (tmp_path / "1-x.json").write_text(json.dumps({"pid": 1, "start": "0", "entries": []}))
    real_glob = type(tmp_path).glob

    def glob_then_vanish(self, pattern):
        found = list(real_glob(self, pattern))
        for path in found:
            path.unlink()
        return iter(found)
    monkeypatch.setattr(type(tmp_path), "glob", glob_then_vanish)
    assert recover(tmp_path, RecordingRunner()) == 0
    assert list(os.listdir(tmp_path)) == []                     # nothing set aside as .bad


def test_a_recycled_pid_is_never_signalled(tmp_path):
    """H1: a record of a dead build whose pid now belongs to an unrelated process group."""
    victim = subprocess.Popen(["sleep", "30"], process_group=0)
    try:
        undo({"kind": "process", "pid": victim.pid, "start": "1"})  # wrong start time: not ours
        assert victim.poll() is None
        entry = {"kind": "process", "pid": victim.pid, "start": ledger_mod._start_time(victim.pid)}
        undo(entry)  # the right start time: ours, ended with its group (and reaped)
        assert ledger_mod._start_time(victim.pid) is None
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
