"""The nightly run's pieces: which command lines are nightly, the lock (held, refused with exit
75 by another process), and the summary with its exit verdict, from records and failed tasks."""

import json
import subprocess
import sys
import time

import pytest

from distonet import nightly
from tests.helpers import plan_of


def test_nightly_command_lines():
    assert nightly.requested(["nightly", "recipe=a"]) and nightly.requested(["-n", "2", "nightly:a"])
    assert not nightly.requested(["build", "recipe=nightly"]) and not nightly.requested([])


def test_a_second_process_is_refused_while_the_lock_is_held(tmp_path, monkeypatch):
    monkeypatch.setattr(nightly, "_held", None)
    nightly.take_lock(tmp_path)
    try:
        other = subprocess.run([sys.executable, "-c", "from pathlib import Path; from distonet import nightly\n"
                                f"nightly.take_lock(Path({str(tmp_path)!r}))"], capture_output=True, text=True)
        assert other.returncode != 0 and "Busy: another nightly run holds" in other.stderr
        assert "pid " in other.stderr                                  # who holds it
    finally:
        nightly._held.close()
        monkeypatch.setattr(nightly, "_held", None)
    nightly.take_lock(tmp_path)                                       # free again once the holder is gone
    nightly._held.close()


def test_the_summary_reads_the_records_and_the_failures(paths, monkeypatch):
    plan = plan_of("minimal", paths)
    since = time.time() - 1
    (paths.cache / "nightly").mkdir(parents=True)
    record = {"recipe": "minimal", "at": time.time(), "build_id": "b7", "boot": "passed", "publish": "published",
              "where": "/share/minimal/b7", "error": None}
    (paths.cache / "nightly/minimal.json").write_text(json.dumps(record))
    text, ok = nightly.summary([(plan, since)], set())
    assert ok and "nightly: 1 published, 0 unchanged, 0 failed, of 1" in text and "/share/minimal/b7" in text
    assert json.loads((paths.output / "nightly-summary.json").read_text())["ok"] is True
    # a record from an earlier run does not count; the failed task says where it stopped
    text, ok = nightly.summary([(plan, time.time() + 5)], {"rootfs:minimal"})
    assert not ok and "failed at rootfs" in text and "1 failed" in text


def test_nightly_without_a_share_is_refused_before_anything_runs(paths, monkeypatch):
    from distonet.errors import DistonetError
    monkeypatch.delenv("DISTONET_SHARE", raising=False)
    with pytest.raises(DistonetError, match="no share given"):
        nightly.check([plan_of("minimal", paths)])
