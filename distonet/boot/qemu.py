"""Boot an artifact under QEMU and watch its serial console for a marker (a login prompt).

KVM is used where it really runs a guest (probed once per host boot: some hosts expose
/dev/kvm but cannot run guests), TCG otherwise. The harness is a library: `doit boot` and the
integration tests call it, and the netboot outputs extend it with their own drive/net options.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import log
from ..errors import ToolMissing
from ..host.ledger import Ledger
from ..paths import Paths
from ..host.run import check_tools

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
LOGIN = r"\S+ login: ?"
# Seen on the console, these end a boot test at once instead of after its timeout.
FATAL = r"Kernel panic - not syncing|end Kernel panic|ALERT! .* Dropping to a shell!"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colours of systemd's status lines


@dataclass
class BootResult:
    name: str
    reached: bool
    seconds: float
    accel: str
    console: str = field(repr=False)
    ssh_banner: str | None = None
    failure: str | None = None        # the console line that ended the boot early

    def line(self) -> str:
        state = f"reached in {self.seconds:.1f}s" if self.reached else f"NOT reached after {self.seconds:.0f}s"
        state += f": {self.failure}" if self.failure else ""
        return f"{self.name:<12} {state} ({self.accel})"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def watch(ledger: Ledger, argv: list[str], console: Path, marker: str, timeout: float,
          after=None, fail: str | None = None) -> tuple[bool, float, str | None]:
    """Start QEMU (its serial console in `console`), wait for `marker` — and then, if given, for
    `after()` to be true (a check from outside, such as an ssh banner) — then stop it. Returns
    (reached, seconds, the line of a kernel panic or of `fail` that ended it early)."""
    pattern = re.compile(marker, re.MULTILINE)
    fatal = re.compile(FATAL + (f"|{fail}" if fail else ""))
    start = time.monotonic()
    mark = ledger.mark()
    with open(console.with_suffix(".qemu.log"), "w") as err:
        proc = ledger.spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    said = start
    try:
        while time.monotonic() - start < timeout:
            text = console.read_text(errors="replace") if console.exists() else ""
            if time.monotonic() - said >= 30:  # a long boot is not a silent one
                said = time.monotonic()
                last = next((l for l in reversed(text.splitlines()) if l.strip()), "")
                log.info(f"… {said - start:.0f}s: {ANSI.sub('', last).strip()[:100]}")
            if pattern.search(text) and (after is None or after()):
                return True, time.monotonic() - start, None
            failed = fatal.search(text)
            if failed:
                return False, time.monotonic() - start, ANSI.sub("", failed.group(0)).strip()
            if proc.poll() is not None:       # QEMU refused its arguments, or the guest powered off
                said_qemu = console.with_suffix(".qemu.log").read_text(errors="replace").strip().splitlines()
                return False, time.monotonic() - start, \
                    f"QEMU exited ({proc.returncode}){': ' + said_qemu[-1] if said_qemu else ''}"
            time.sleep(0.25)
        return False, time.monotonic() - start, None
    finally:
        ledger.undo_to(mark)


def pick_accel(ledger: Ledger, cache: Path, kernel: Path | None) -> str:
    """'kvm' if a kernel really starts under KVM within seconds, else 'tcg'."""
    forced = os.environ.get("DISTONET_ACCEL")
    if forced:
        return forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK) or kernel is None or not kernel.is_file():
        return "tcg"
    probe = cache / f"accel-{_boot_id()}"
    if probe.is_file():
        return probe.read_text().strip()
    with tempfile.TemporaryDirectory() as tmp:
        console = Path(tmp) / "console"
        ok, _, _ = watch(ledger, ["qemu-system-x86_64", "-accel", "kvm", "-m", "256", "-nodefaults",
                               "-display", "none", "-no-reboot", "-serial", f"file:{console}",
                               "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1"],
                      console, r"Linux version", 20)
    accel = "kvm" if ok else "tcg"
    if not ok:
        log.info("boot: /dev/kvm did not start a probe kernel within 20 s; using TCG (slower)")
    cache.mkdir(parents=True, exist_ok=True)
    probe.write_text(accel)
    return accel


def qemu_argv(accel: str, console: Path, memory: int = 1024, serial_socket: Path | None = None) -> list[str]:
    # One vCPU under TCG: with two, the kernel's int3-based live code patching at boot races
    # TCG's handling of self-modifying code and can oops (seen in CI); KVM gets two.
    cpus = 2 if accel == "kvm" else 1
    # With a socket, the console is also interactive (boot/serial.py); the logfile is the same.
    serial = (["-chardev", f"socket,id=ser0,path={serial_socket},server=on,wait=off,logfile={console}",
               "-serial", "chardev:ser0"] if serial_socket else ["-serial", f"file:{console}"])
    return ["qemu-system-x86_64", "-accel", accel, "-machine", "q35", "-m", str(memory),
            "-smp", str(cpus), "-nodefaults", "-display", "none", "-no-reboot", *serial]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def net_args(ssh_port: int | None = None) -> list[str]:
    """QEMU user networking (DHCP from QEMU, host side on loopback); optionally the guest's
    port 22 forwarded to 127.0.0.1:ssh_port."""
    fwd = f",hostfwd=tcp:127.0.0.1:{ssh_port}-:22" if ssh_port else ""
    return ["-netdev", f"user,id=net0{fwd}", "-device", "virtio-net-pci,netdev=net0"]


def ssh_banner(port: int, timeout: float = 3) -> str | None:
    """The SSH server's identification line on 127.0.0.1:port, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            data = sock.recv(256)
    except OSError:
        return None
    line = data.decode(errors="replace").splitlines()[0] if data else ""
    return line if line.startswith("SSH-") else None


def disk_args(disk: Path, fmt: str, bus: str = "virtio", direct: bool = False) -> list[str]:
    """`bus` virtio (KVM, Xen's PV disks are much the same to the image), sata (the AHCI port
    VirtualBox gives an OVA's disk) or cdrom (an ISO in a SATA CD drive, booted first).
    snapshot=on: a boot test never changes what it proves. `direct`: QEMU starts the kernel
    itself (its loader takes the first boot index)."""
    if bus == "cdrom":
        return ["-drive", f"file={disk},format=raw,if=none,id=cd0,media=cdrom,readonly=on",
                "-device", f"ide-cd,drive=cd0,bus=ide.0{'' if direct else ',bootindex=0'}"]
    if bus == "sata":
        return ["-drive", f"file={disk},format={fmt},if=none,id=disk0,snapshot=on",
                "-device", "ide-hd,drive=disk0,bus=ide.0"]
    return ["-drive", f"file={disk},format={fmt},if=virtio,snapshot=on"]


def disk_format(disk: Path) -> str:
    return {".qcow2": "qcow2", ".vmdk": "vmdk"}.get(disk.suffix, "raw")   # an ISO is raw


def firmware_args(firmware: str, workdir: Path) -> list[str]:
    if firmware == "bios":
        return []
    vars_copy = workdir / "OVMF_VARS.fd"
    shutil.copyfile(OVMF_VARS, vars_copy)
    return ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]


def boot_disk(disk: Path, firmware: str, *, marker: str = LOGIN, timeout: float = 300,
              kernel: Path | None = None, paths: Paths | None = None, name: str | None = None,
              log_dir: Path | None = None, ssh: bool = False, then=None, console_session=None,
              bus: str = "virtio", direct: tuple[Path, Path, str] | None = None) -> BootResult:
    """Boot `disk` with `firmware` until `marker` shows on the serial console; with ssh, also
    until sshd answers through a port forwarded from 127.0.0.1 (the banner is in the result),
    and then, if given, until `then(port)` is true (a test logging in). With `console_session`,
    then until `console_session(socket_path)` is true (a test logging in on the serial console).
    `direct` = (kernel, initrd, command line): started by QEMU itself, as Xen's dom0 starts a
    PVH guest, the disk holding only the root."""
    paths = paths or Paths.default()
    check_tools(["qemu-system-x86_64"])
    if firmware == "uefi" and not OVMF_CODE.is_file():
        raise ToolMissing(f"{OVMF_CODE}: not found", hint="run ./setup.sh (it installs ovmf)")
    fmt = disk_format(disk)
    name = name or f"{disk.name}/{firmware}"
    with tempfile.TemporaryDirectory(prefix="distonet-boot-") as tmp, Ledger(paths.ledger) as ledger:
        workdir = Path(tmp)
        accel = pick_accel(ledger, paths.cache, kernel)
        console = workdir / "console.log"
        port = free_port() if ssh else None
        banner: list[str] = []

        def sshd_answers() -> bool:
            line = banner[0] if banner else ssh_banner(port)
            if line and not banner:
                banner.append(line)
            return bool(line) and (then is None or then(port))

        sock = workdir / "serial.sock" if console_session else None

        def after() -> bool:
            return (not ssh or sshd_answers()) and (sock is None or console_session(sock))

        argv = (qemu_argv(accel, console, serial_socket=sock) + firmware_args(firmware, workdir)
                + disk_args(disk, fmt, bus, bool(direct)) + net_args(port)
                + (["-kernel", str(direct[0]), "-initrd", str(direct[1]), "-append", direct[2]] if direct else []))
        with log.step(f"boot {name} ({accel}), waiting for /{marker}/{' and sshd' if ssh else ''}"):
            reached, seconds, failure = watch(ledger, argv, console, marker, timeout,
                                              after=after if (ssh or sock) else None)
        text = console.read_text(errors="replace") if console.exists() else ""
        if log_dir is not None:  # the console and QEMU's own messages, kept for the user
            log_dir.mkdir(parents=True, exist_ok=True)
            stem = f"boot-{name.replace('/', '-')}"
            (log_dir / f"{stem}.log").write_text(text)
            qemu_log = console.with_suffix(".qemu.log")
            if qemu_log.exists():
                shutil.copyfile(qemu_log, log_dir / f"{stem}.qemu.log")
    return BootResult(name, reached, round(seconds, 1), accel, text, banner[0] if banner else None, failure)


def boot_recipe(plan, disk: bool = True, netboot: bool = False,
                hypervisors: dict[str, Path] | None = None) -> list[BootResult]:
    """Boot the recipe's disk.raw, and its diskless modes over PXE, with each firmware it names,
    and its hypervisor artifacts (kind: file) as their hypervisors start them; print one line
    for each."""
    from .hypervisors import boot_iso, boot_ova, boot_xen
    out = plan.out_dir
    recipe = plan.recipe
    results = []
    hypervisors = hypervisors or {}
    if "ova" in hypervisors:
        results.append(boot_ova(plan, hypervisors["ova"]))
    if "xen" in hypervisors:
        results += [r for r in [boot_xen(plan, hypervisors["xen"])] if r]
    if "iso" in hypervisors:
        for firmware in recipe.boot.firmware:
            results.append(boot_iso(plan, hypervisors["iso"], str(firmware)))
        results += [boot_iso(plan, hypervisors["iso"], "bios", how) for how in ("stick", "toram")]
    if disk:   # each firmware's boot at once, on cores of their own (boot/parallel.py)
        from .parallel import side_by_side
        results += side_by_side(*(functools.partial(
            boot_disk, out / "disk.raw", str(firmware), marker=recipe.boot.marker or LOGIN, timeout=recipe.boot.timeout,
            kernel=out / "vmlinuz", paths=plan.paths, name=f"disk/{firmware}", log_dir=out / "boot")
            for firmware in recipe.boot.firmware))
    if netboot and recipe.netboot.modes:
        from .netboot import lab_for
        with lab_for(plan, log_dir=out / "boot") as lab:
            for mode in recipe.netboot.modes:
                for firmware in recipe.boot.firmware:
                    results.append(lab.boot(str(firmware), str(mode), hostname=f"{recipe.name}-{mode}",
                                            marker=recipe.boot.marker or LOGIN,
                                            timeout=max(recipe.boot.timeout, 400)))
    for r in results:
        log.info(r.line())
    return results
