"""The serial-console watcher, driven by a stand-in for QEMU that writes a console file."""

import time

from distonet.boot.qemu import LOGIN, qemu_argv, watch
from distonet.host.ledger import Ledger


def fake_vm(console, text, then_sleep=30):
    return ["sh", "-c", f"sleep 0.3; printf '%s' '{text}' > {console}; sleep {then_sleep}"]


def test_marker_reached_and_vm_stopped(tmp_path):
    console = tmp_path / "console.log"
    with Ledger(tmp_path / "ledger") as led:
        ok, secs, failure = watch(led, fake_vm(console, "Debian GNU/Linux 13 node ttyS0\n\nnode login: "), console, LOGIN, 20)
        assert led.entries == []  # the VM process was ended and forgotten
    assert ok and secs < 10 and failure is None


def test_kernel_panic_fails_fast(tmp_path):
    console = tmp_path / "console.log"
    start = time.monotonic()
    with Ledger(tmp_path / "ledger") as led:
        ok, _, failure = watch(led, fake_vm(console, "[ 4.2] Kernel panic - not syncing: Fatal exception\n"), console, LOGIN, 20)
    assert not ok and time.monotonic() - start < 10 and failure == "Kernel panic - not syncing"


def test_a_failure_pattern_ends_the_boot_with_its_line(tmp_path):
    from distonet.boot.netboot import ISCSI_FAILED
    console = tmp_path / "console.log"
    start = time.monotonic()
    line = "iscsistart: initiator reported error (24 - iSCSI login failed due to authorization failure)"
    with Ledger(tmp_path / "ledger") as led:
        ok, _, failure = watch(led, fake_vm(console, f"Begin: Running /scripts/local-top ... {line}\n"), console,
                               LOGIN, 20, fail=ISCSI_FAILED)
    assert not ok and time.monotonic() - start < 10 and failure == line


def test_an_initramfs_without_its_root_fails_fast(tmp_path):
    console = tmp_path / "console.log"
    with Ledger(tmp_path / "ledger") as led:
        ok, secs, failure = watch(led, fake_vm(console, "ALERT!  UUID=1234 does not exist.  Dropping to a shell!\n"),
                                  console, LOGIN, 20)
    assert not ok and secs < 10 and failure.startswith("ALERT!")


def test_vm_exit_without_marker_fails(tmp_path):
    console = tmp_path / "console.log"
    with Ledger(tmp_path / "ledger") as led:
        ok, _, _ = watch(led, fake_vm(console, "no prompt here\n", then_sleep=0), console, LOGIN, 20)
    assert not ok


def test_tcg_gets_one_vcpu(tmp_path):
    argv = qemu_argv("tcg", tmp_path / "c")
    assert argv[argv.index("-smp") + 1] == "1" and argv[argv.index("-accel") + 1] == "tcg"
    kvm = qemu_argv("kvm", tmp_path / "c")
    assert kvm[kvm.index("-smp") + 1] == "2"


def test_a_boot_never_changes_the_artifact(tmp_path):
    from distonet.boot.qemu import disk_args
    assert disk_args(tmp_path / "d.qcow2", "qcow2")[1].endswith(",snapshot=on")


def test_ssh_banner_from_a_loopback_server():
    import socket
    import threading
    from distonet.boot.qemu import ssh_banner
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def serve():
        conn, _ = srv.accept()
        conn.sendall(b"SSH-2.0-OpenSSH_10.0 Debian\r\n")
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    assert ssh_banner(port) == "SSH-2.0-OpenSSH_10.0 Debian"
    srv.close()
    assert ssh_banner(port, timeout=0.5) is None  # nobody listening


def test_marker_then_outside_check(tmp_path):
    console = tmp_path / "console.log"
    calls = []

    def after():
        calls.append(1)
        return len(calls) >= 3

    with Ledger(tmp_path / "ledger") as led:
        ok, _, _ = watch(led, fake_vm(console, "node login: "), console, LOGIN, 20, after=after)
    assert ok and len(calls) == 3
