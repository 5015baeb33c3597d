"""The serial-console session against a fake console on a Unix socket: login, then commands whose
output is cut out exactly, with kernel messages before it ignored."""

import re
import socket
import threading

import pytest

from distonet.boot.serial import SerialSession
from distonet.errors import BuildError


def fake_console(server: socket.socket, answers: dict[str, str]) -> None:
    conn, _ = server.accept()
    buf = b""
    with conn:
        while True:
            data = conn.recv(4096)
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode()
                if text == "":
                    conn.sendall(b"\r\n[   77.3] kvm_amd: noise\r\nlab login: ")
                elif text == "root":
                    conn.sendall(b"Password: ")
                elif text == "secret":
                    conn.sendall(b"\r\nroot@lab:~# ")
                elif text.startswith("dmesg -n 1"):
                    conn.sendall(b"# ")
                elif m := re.match(r"echo (B\w+); (.*); echo (E\w+):\$\?$", text):
                    out = answers.get(m.group(2), "")
                    conn.sendall(f"{m.group(1)}\r\n{out}{m.group(3)}:0\r\n# ".encode())


@pytest.fixture
def console(tmp_path):
    path = tmp_path / "serial.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    yield path, server
    server.close()


def test_login_and_commands(console):
    path, server = console
    t = threading.Thread(target=fake_console, args=(server, {"cat /etc/motd": "Lab\r\nsecond line\r\n"}), daemon=True)
    t.start()
    s = SerialSession(path, timeout=5)
    s.login("root", "secret")
    assert s.run("cat /etc/motd") == (0, "Lab\nsecond line\n")
    assert s.run("true") == (0, "")
    s.close()


def test_a_console_that_never_answers_is_an_error(console):
    path, server = console
    s = SerialSession(path, timeout=0.5)
    with pytest.raises(BuildError, match="serial console: no /"):
        s.expect("never", 0.5)
    s.close()
