"""The fault-injection switch: named points, glob patterns, each action, once per run."""

import errno
import os
import signal
import subprocess
import sys

import pytest

from distonet import PROJECT_ROOT, faults
from distonet.errors import BuildError


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(faults, "_fired", set())
    monkeypatch.delenv(faults.ENV, raising=False)
    monkeypatch.delenv(faults.ONCE_ENV, raising=False)


def test_without_the_variable_nothing_happens():
    faults.point("stage:bootstrap:made")


def test_a_pattern_fires_at_the_points_it_names_once(monkeypatch):
    monkeypatch.setenv(faults.ENV, "stage:*:made:fail")
    faults.point("stage:bootstrap:begin")
    with pytest.raises(faults.InjectedFault, match="stage:bootstrap:made"):
        faults.point("stage:bootstrap:made")
    faults.point("stage:bootstrap:made")       # once per process
    with pytest.raises(faults.InjectedFault):
        faults.point("stage:seal:made")


def test_disk_full_is_enospc(monkeypatch):
    monkeypatch.setenv(faults.ENV, "output:rootfs:made:full")
    with pytest.raises(OSError) as err:
        faults.point("output:rootfs:made")
    assert err.value.errno == errno.ENOSPC


def test_once_across_processes(monkeypatch, tmp_path):
    monkeypatch.setenv(faults.ENV, "x:fail")
    monkeypatch.setenv(faults.ONCE_ENV, str(tmp_path / "fired"))
    with pytest.raises(faults.InjectedFault):
        faults.point("x")
    faults._fired.clear()                       # as in another process
    faults.point("x")


@pytest.mark.parametrize("spec", ["nocolon", "x:explode", ":fail"])
def test_a_bad_spec_says_what_is_wanted(monkeypatch, spec):
    monkeypatch.setenv(faults.ENV, spec)
    with pytest.raises(BuildError, match="DISTONET_FAULT"):
        faults.point("x")


@pytest.mark.parametrize("action,sig", [("kill", signal.SIGKILL), ("term", signal.SIGTERM), ("int", signal.SIGINT)])
def test_signals_reach_the_process(action, sig):
    code = "from distonet import faults; faults.point('p'); print('survived')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env=dict(os.environ, DISTONET_FAULT=f"p:{action}"), process_group=0,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), timeout=30)
    assert proc.returncode == -sig and "survived" not in proc.stdout


def test_a_command_point_names_the_tool_behind_a_wrapper(monkeypatch):
    """`eatmydata mkfs.ext4 …` is the point `command:mkfs.ext4`, as `mkfs.ext4 …` is."""
    from distonet.host.run import run, tool_of
    assert tool_of(["eatmydata", "/usr/sbin/mkfs.ext4", "-q"]) == "mkfs.ext4"
    assert tool_of(["/usr/bin/qemu-img", "convert"]) == "qemu-img"
    monkeypatch.setenv(faults.ENV, "command:true:fail")
    with pytest.raises(faults.InjectedFault, match="command:true"):
        run(["eatmydata", "true"])
