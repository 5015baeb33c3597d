"""The one runner: argv only, failures raise with the command and its output's tail, the build
log gets the output, a hung command is killed with its whole process group."""

import os
import time

import pytest

from distonet import log
from distonet.errors import CommandError, ToolMissing
from distonet.host.run import run


def test_a_non_zero_exit_raises_with_the_quoted_command_and_the_logs_tail(tmp_path):
    log.set_log_file(tmp_path / "build.log")
    try:
        with pytest.raises(CommandError) as exc:
            run(["sh", "-c", "echo one; echo two >&2; exit 3", "arg with space"])
        msg = str(exc.value)
        assert "command failed (3): sh -c 'echo one; echo two >&2; exit 3' 'arg with space'" in msg
        assert "one" in msg and "two" in msg and str(tmp_path / "build.log") in msg
        assert "two" in (tmp_path / "build.log").read_text()
        assert run(["sh", "-c", "exit 4"], check=False).returncode == 4
    finally:
        log.set_log_file(None)


def test_capture_and_input():
    assert run(["cat"], capture=True, input="x\n").stdout == "x\n"


def test_a_missing_tool_says_how_to_install_it():
    with pytest.raises(ToolMissing, match="no-such-tool-xyz: not found"):
        run(["no-such-tool-xyz"])


def test_a_hung_command_is_killed_with_its_group(tmp_path):
    pidfile = tmp_path / "child"
    start = time.monotonic()
    with pytest.raises(CommandError, match="timed out after 1s"):
        run(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], timeout=1)
    assert time.monotonic() - start < 10
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not os.path.exists(f"/proc/{child}") or open(f"/proc/{child}/stat").read().split()[2] == "Z"


def test_a_hung_command_is_killed_and_says_so_through_its_callers():
    from distonet.errors import CommandError
    from distonet.host.run import run
    with pytest.raises(CommandError) as exc:
        run(["sleep", "30"], timeout=0.5)
    assert exc.value.timeout == 0.5 and "timed out after 0.5s and was killed: sleep 30" in str(exc.value)
    said = str(exc.value.failed("hook site/post-install/10-x"))
    assert said.startswith("hook site/post-install/10-x timed out after 0.5s and was killed")
    assert "DISTONET_COMMAND_TIMEOUT" in said
