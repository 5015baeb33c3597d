"""Log in on a guest's serial console and run commands there, as an administrator at the console
would: the proof that what a build put in the image is there when the machine runs.

QEMU's serial port is a chardev socket (with a logfile, which `watch` reads as before); this
module is the other end of the socket.
"""

from __future__ import annotations

import codecs
import re
import socket
import time
import uuid
from pathlib import Path

from ..errors import BuildError


class SerialSession:
    def __init__(self, sock_path: Path, timeout: float = 60):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(sock_path))
        self.sock.settimeout(0.5)
        self.timeout = timeout
        self.buffer = ""
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span reads

    def close(self) -> None:
        self.sock.close()

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def expect(self, pattern: str, timeout: float | None = None) -> str:
        """Read until `pattern` matches what arrived since the last match; return that text."""
        rx = re.compile(pattern, re.MULTILINE)
        end = time.monotonic() + (timeout or self.timeout)
        while True:
            m = rx.search(self.buffer)
            if m:
                seen, self.buffer = self.buffer[:m.end()], self.buffer[m.end():]
                return seen
            if time.monotonic() > end:
                raise BuildError(f"serial console: no /{pattern}/ within {timeout or self.timeout:.0f}s; "
                                 f"last output: {self.buffer[-300:]!r}")
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            if not data:
                raise BuildError("serial console: the guest closed the connection")
            self.buffer += self.decoder.decode(data).replace("\r", "")

    def login(self, user: str, password: str) -> None:
        self.send("\n")  # a fresh prompt, whatever the console printed before
        self.expect(r"login: ?$", 120)
        self.send(f"{user}\n")
        self.expect(r"[Pp]assword: ?$")
        self.send(f"{password}\n")
        self.expect(r"[#$] ?$", 60)
        # A plain prompt and no echo of the marker's own line: output is then exactly the command's.
        # Kernel messages would land in the middle of command output: only emergencies now.
        # agetty guesses parity from the login name's characters (all-even ASCII: 7-bit with
        # parity), which would mangle UTF-8 output: back to 8 bits, no parity.
        self.send("dmesg -n 1; export PS1='# ' TERM=dumb; stty -echo cs8 -parenb -istrip\n")
        self.expect(r"# ?$")

    def run(self, command: str, timeout: float | None = None) -> tuple[int, str]:
        """(exit status, output) of one shell command."""
        tag = uuid.uuid4().hex[:8]
        self.send(f"echo B{tag}; {command}; echo E{tag}:$?\n")
        out = self.expect(rf"^E{tag}:(\d+)$", timeout)
        body = out.split(f"B{tag}\n", 1)[-1]
        body, _, status = body.rpartition(f"E{tag}:")
        return int(status.strip()), body
