"""Boot a recipe's diskless artifacts the way a node on the site's network would: PXE from the
generated pxe/ tree, the root over NFS from nfs-ganesha started with the generated config.

Everything stays on this machine. The servers run in a private network namespace that has only
loopback (and a private mount namespace, for rpcbind's /run and the export path); QEMU runs in
the same namespace, and its user-mode network gives the guest DHCP, TFTP of the pxe tree and the
host side at 10.0.2.2, which is that namespace's loopback. Every process is started through the
ledger, so an interrupted test or build ends them (by PID, with the namespace's holder last).
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
import time
from pathlib import Path

from .. import log
from ..errors import BuildError
from ..host.ledger import Ledger
from ..host.run import check_tools, run
from ..paths import Paths
from .qemu import LOGIN, BootResult, firmware_args, pick_accel, qemu_argv, watch

BOOTFILE = {"bios": "pxelinux.0", "uefi": "grubnetx64.efi"}
SERVER_TOOLS = ["unshare", "nsenter", "rpcbind", "rpcinfo", "ganesha.nfsd", "tar", "zstd", "ip"]
# A tmpfs is laid over the export path's top folder inside the namespace, so making the path
# changes nothing on the host; these tops would hide what the servers themselves need.
UNSAFE_TOPS = {"/", "/tmp", "/run", "/proc", "/sys", "/dev", "/usr", "/etc", "/var", "/lib", "/bin", "/sbin"}


def holder_script(export: str, root: Path, ready: Path) -> str:
    top = "/" + export.strip("/").split("/")[0]
    if top in UNSAFE_TOPS or str(root).startswith(top + "/"):
        raise BuildError(f"netboot test: cannot serve {root} at {export} (its top folder {top} is needed)")
    q = shlex.quote
    return (f"set -e; ip link set lo up; mount -t tmpfs tmpfs /run; mkdir -p /run/rpcbind; "
            f"mount -t tmpfs tmpfs {q(top)}; mkdir -p {q(export)}; mount --bind {q(str(root))} {q(export)}; "
            f"touch {q(str(ready))}; exec sleep infinity")


def in_ns(pid: int, argv: list[str]) -> list[str]:
    return ["nsenter", "-t", str(pid), "-n", "-m", "--", *argv]


def wait_until(check, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.2)
    raise BuildError(f"netboot test: {what} did not start within {timeout:.0f}s")


def boot_pxe_nfs(out_dir: Path, firmware: str, export: str, *, paths: Paths | None = None,
                 marker: str = LOGIN, timeout: float = 400, console_session=None,
                 log_dir: Path | None = None, hostname: str | None = None,
                 export_root: Path | None = None) -> BootResult:
    """PXE-boot `out_dir`'s pxe/ tree with `firmware`, its root over NFS from ganesha serving
    nfsroot.tar.zst (unpacked into `export_root`, or a temporary folder) with config/ganesha.conf,
    until `marker` (then `console_session`). QEMU's DHCP gives the node `hostname` if set."""
    paths = paths or Paths.default()
    out_dir = Path(out_dir).resolve()  # the servers start in another mount namespace, cwd "/"
    check_tools(["qemu-system-x86_64", *SERVER_TOOLS])
    name = f"pxe-nfs/{firmware}"
    with tempfile.TemporaryDirectory(prefix="distonet-netboot-") as tmp, Ledger(paths.ledger) as ledger:
        work = Path(tmp)
        root = Path(export_root) if export_root else work / "root"
        root.mkdir(parents=True, exist_ok=True)
        run(["tar", "--extract", "--file", str(out_dir / "nfsroot.tar.zst"), "--directory", str(root),
             "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "--use-compress-program=zstd"])
        ready = work / "ready"
        holder = ledger.spawn(["unshare", "--net", "--mount", "--propagation", "private", "--fork",
                               "--kill-child", "sh", "-c", holder_script(export, root, ready)])
        wait_until(lambda: ready.exists() or holder.poll() is not None, 10, "the network namespace")
        if holder.poll() is not None:
            raise BuildError("netboot test: the network namespace could not be made")
        ns = holder.pid
        ledger.spawn(in_ns(ns, ["rpcbind", "-f", "-w"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        glog = work / "ganesha.log"
        ganesha = ledger.spawn(in_ns(ns, ["ganesha.nfsd", "-F", "-f", str(out_dir / "config/ganesha.conf"),
                                          "-L", str(glog), "-p", str(work / "ganesha.pid")]),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def mountd_up() -> bool:
            if ganesha.poll() is not None:
                raise BuildError(f"netboot test: ganesha stopped: {glog.read_text()[-500:] if glog.exists() else ''}")
            probe = run(in_ns(ns, ["rpcinfo", "-p", "127.0.0.1"]), check=False, capture=True)
            return " mountd" in probe.stdout and " nfs" in probe.stdout
        wait_until(mountd_up, 30, "nfs-ganesha")

        accel = pick_accel(ledger, paths.cache, out_dir / "vmlinuz")
        console = work / "console.log"
        sock = work / "serial.sock" if console_session else None
        named = f",hostname={hostname}" if hostname else ""
        net = ["-netdev", f"user,id=net0,tftp={out_dir / 'pxe'},bootfile={BOOTFILE[firmware]}{named}",
               "-device", "virtio-net-pci,netdev=net0", "-boot", "n"]
        argv = in_ns(ns, qemu_argv(accel, console, serial_socket=sock) + firmware_args(firmware, work) + net)
        with log.step(f"boot {name} ({accel}), waiting for /{marker}/"):
            reached, seconds = watch(ledger, argv, console, marker, timeout,
                                     after=(lambda: console_session(sock)) if sock else None)
        text = console.read_text(errors="replace") if console.exists() else ""
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            (log_dir / f"boot-{name.replace('/', '-')}.log").write_text(text)
            if glog.exists():
                (log_dir / "boot-pxe-nfs-ganesha.log").write_text(glog.read_text(errors="replace"))
    return BootResult(name, reached, round(seconds, 1), accel, text)
