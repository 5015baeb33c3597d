"""Boot a recipe's diskless artifacts the way a node on the site's network would: PXE from the
generated pxe/ tree, the root over NFS from nfs-ganesha or on an iSCSI LUN from tgtd, each started
with the generated config/ files, so a passing boot proves the shipped configurations.

Everything stays on this machine. The servers run in a private network namespace that has only
loopback (and a private mount namespace, for their /run and the paths the configs name); QEMU
runs in the same namespace, and its user-mode network gives the guest DHCP, TFTP and the host
side at 10.0.2.2, which is that namespace's loopback. Every process is started through the
ledger with a parent-death signal, so an interrupted (even SIGKILLed) test or build leaves no
server, VM or namespace behind.

`Lab` starts the servers once; `Lab.boot` boots one node (a firmware, a mode, a MAC address and
a DHCP host name) as often as a test needs, so nodes can reboot and share one server.
"""

from __future__ import annotations

import re
import shlex
import shutil
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

# What DHCP tells each firmware to load. "ipxe": a BIOS machine whose PXE ROM is iPXE (QEMU's
# is) runs boot.ipxe itself, as a site's iPXE would chain it.
BOOTFILE = {"bios": "pxelinux.0", "uefi": "grubnetx64.efi", "ipxe": "boot.ipxe"}
NFS_TOOLS = ["rpcbind", "rpcinfo", "ganesha.nfsd", "tar", "zstd"]
ISCSI_TOOLS = ["tgtd", "tgt-admin", "tgtadm"]
# A tmpfs is laid over each served path's top folder inside the namespace, so making the paths
# changes nothing on the host; these tops would hide what the servers themselves need.
UNSAFE_TOPS = {"/", "/tmp", "/run", "/proc", "/sys", "/dev", "/usr", "/etc", "/var", "/lib", "/bin", "/sbin"}
# What a failed iSCSI login prints in the initramfs: the boot is over, no need to wait for root.
ISCSI_FAILED = r"iscsistart: .*(login failed|authoriz|[Aa]uthentication)[^\n]*"


def _top(path: str) -> str:
    return "/" + path.strip("/").split("/")[0]


def holder_script(binds: list[tuple[Path, str]], ready: Path) -> str:
    """The namespace's first process: loopback up, a private /run, each (host path → served
    path) bound where the configs expect it, then wait to be ended."""
    q = shlex.quote
    steps = ["set -e", "ip link set lo up", "mount -t tmpfs tmpfs /run", "mkdir -p /run/rpcbind"]
    for top in dict.fromkeys(_top(target) for _, target in binds):
        steps.append(f"mount -t tmpfs tmpfs {q(top)}")
    for source, target in binds:
        top = _top(target)
        if top in UNSAFE_TOPS or str(source).startswith(top + "/"):
            raise BuildError(f"netboot test: cannot serve {source} at {target} (its top folder {top} is needed)")
        if Path(source).is_dir():
            steps.append(f"mkdir -p {q(target)}; mount --bind {q(str(source))} {q(target)}")
        else:
            # A link, not a bind: tgt-admin takes a file that is a mount point for one in use.
            steps.append(f"mkdir -p {q(str(Path(target).parent))}; ln -s {q(str(source))} {q(target)}")
    return "; ".join(steps + [f"touch {q(str(ready))}", "exec sleep infinity"])


def in_ns(pid: int, argv: list[str]) -> list[str]:
    # -p forks: nsenter waits for the command, and the ledger ends both (one process group).
    return ["nsenter", "-t", str(pid), "-n", "-m", "-p", "--", *argv]


def ns_pid(unshare_pid: int) -> int:
    """The namespaces' first process (unshare's child): the one whose namespaces nsenter joins."""
    children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
    if not children:
        raise BuildError("netboot test: the network namespace has no process")
    return int(children[0])


def wait_until(check, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.2)
    raise BuildError(f"netboot test: {what} did not start within {timeout:.0f}s")


def unpack(tarball: Path, dest: Path) -> None:
    run(["tar", "--extract", "--file", str(tarball), "--directory", str(dest), "--numeric-owner",
         "--xattrs", "--xattrs-include=*", "--acls", "--use-compress-program=zstd"])


class Lab:
    """The site's servers for one recipe's outputs (`out_dir`), in a private namespace.

    nfs: `export` is the path nodes mount; the root is nfsroot.tar.zst unpacked into
    `export_root` (or a temporary folder). layers: the nfs-persistent path, served from
    `layers_root`. lun: the iSCSI LUN's path in config/tgt/, served from rootfs.img."""

    def __init__(self, out_dir: Path, *, paths: Paths | None = None, export: str | None = None,
                 export_root: Path | None = None, layers: str | None = None, layers_root: Path | None = None,
                 lun: str | None = None, tgt_conf: Path | None = None, log_dir: Path | None = None,
                 node_target=None):
        self.out = Path(out_dir).resolve()  # the servers start in another mount namespace, cwd "/"
        self.paths = paths or Paths.default()
        self.export, self.export_root = export, export_root
        self.layers, self.layers_root = layers, layers_root
        self.lun, self.tgt_conf = lun, tgt_conf
        # iscsi-persistent: host name → (target name, tgt config of that node's own target), for
        # a node the site's config/tgt/ file does not declare (config.tgt_text renders it)
        self.node_target = node_target
        self.log_dir = log_dir
        self.boots = 0

    def __enter__(self) -> "Lab":
        check_tools(["qemu-system-x86_64", "unshare", "nsenter", "ip",
                     *(NFS_TOOLS if self.export else []), *(ISCSI_TOOLS if self.lun else [])])
        self._tmp = tempfile.TemporaryDirectory(prefix="distonet-netboot-")
        self.work = Path(self._tmp.name)
        self.ledger = Ledger(self.paths.ledger).__enter__()
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.ledger.__exit__(*exc)   # QEMU, the servers, then the namespace's holder
        finally:
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                for name in ("ganesha.log", "tgtd.log"):
                    if (self.work / name).exists():
                        shutil.copyfile(self.work / name, self.log_dir / f"boot-netboot-{name}")
            self._tmp.cleanup()

    def _start(self) -> None:
        binds: list[tuple[Path, str]] = []
        if self.export:
            root = Path(self.export_root) if self.export_root else self.work / "root"
            root.mkdir(parents=True, exist_ok=True)
            unpack(self.out / "nfsroot.tar.zst", root)
            binds.append((root, self.export))
        if self.layers:
            self.layers_root = Path(self.layers_root or self.work / "layers")
            self.layers_root.mkdir(parents=True, exist_ok=True)
            binds.append((self.layers_root, self.layers))
        if self.lun:
            binds.append((self.out / "rootfs.img", self.lun))
        ready = self.work / "ready"
        # A PID namespace too: when its first process goes, the kernel ends every process in it,
        # even servers that dropped privileges (and with them the parent-death signal).
        holder = self.ledger.spawn(["unshare", "--net", "--mount", "--pid", "--mount-proc", "--propagation",
                                    "private", "--fork", "--kill-child", "sh", "-c", holder_script(binds, ready)])
        wait_until(lambda: ready.exists() or holder.poll() is not None, 10, "the network namespace")
        if holder.poll() is not None:
            raise BuildError("netboot test: the network namespace could not be made")
        self.ns = ns_pid(holder.pid)
        if self.export:
            self._start_nfs()
        if self.lun:
            self._start_iscsi()

    def _start_nfs(self) -> None:
        self.ledger.spawn(in_ns(self.ns, ["rpcbind", "-f", "-w"]),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        glog = self.work / "ganesha.log"
        ganesha = self.ledger.spawn(in_ns(self.ns, ["ganesha.nfsd", "-F", "-f", str(self.out / "config/ganesha.conf"),
                                                    "-L", str(glog), "-p", str(self.work / "ganesha.pid")]),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def mountd_up() -> bool:
            if ganesha.poll() is not None:
                raise BuildError(f"netboot test: ganesha stopped: {glog.read_text()[-500:] if glog.exists() else ''}")
            probe = run(in_ns(self.ns, ["rpcinfo", "-p", "127.0.0.1"]), check=False, capture=True)
            return " mountd" in probe.stdout and " nfs" in probe.stdout
        wait_until(mountd_up, 30, "nfs-ganesha")

    def _start_iscsi(self) -> None:
        tlog = self.work / "tgtd.log"
        with open(tlog, "w") as fh:
            tgtd = self.ledger.spawn(in_ns(self.ns, ["tgtd", "-f", "--iscsi", "portal=127.0.0.1:3260"]),
                                     stdout=fh, stderr=subprocess.STDOUT)

        def tgtd_up() -> bool:
            if tgtd.poll() is not None:
                raise BuildError(f"netboot test: tgtd stopped: {tlog.read_text()[-500:]}")
            return run(in_ns(self.ns, ["tgtadm", "--lld", "iscsi", "--mode", "target", "--op", "show"]),
                       check=False, capture=True).returncode == 0
        wait_until(tgtd_up, 15, "tgtd")
        run(in_ns(self.ns, ["tgt-admin", "--conf", str(self.tgt_conf), "--execute"]), capture=True)

    def tftp_tree(self, mode: str, mac: str, swap: dict[str, Path] | None = None) -> Path:
        """The pxe/ tree as the site serves it, plus what a site's inventory would give a machine
        with `mac` that boots `mode` (unless the tree has an entry of its own for it): files
        linked, not copied. `swap` replaces files (a test's wrong credentials)."""
        from ..netboot import host_files
        self.boots += 1
        tree = self.work / f"tftp-{self.boots}"
        src = self.out / "pxe"
        for f in src.rglob("*"):
            if f.is_file():
                dest = tree / f.relative_to(src)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.symlink_to(f)
        for rel, path in (swap or {}).items():
            (tree / rel).unlink(missing_ok=True)
            (tree / rel).symlink_to(path)
        # Where the loaders look for this machine's own file (netboot.host_files), and how the
        # recipe's menu becomes one that boots `mode` there.
        choose = {
            "pxelinux.cfg.j2": ("pxelinux.cfg/default",
                                lambda m: re.sub(r"(?m)^DEFAULT .*$", f"DEFAULT {mode}", m)),
            "grub.cfg.j2": ("grub/grub.cfg",   # without the include of host files itself
                            lambda m: re.sub(r"(?s)^.*?\nfi\n", "", m.replace(
                                "set timeout=", f"set default={mode}\nset timeout=", 1), count=1)),
            "boot.ipxe.j2": ("boot.ipxe",      # after the chain to hosts/
                             lambda m: f"#!ipxe\ngoto {mode}\n" + m.split("||\n", 1)[-1]),
        }
        for template, rel in host_files(mac).items():
            own, (menu, edit) = tree / rel.removeprefix("pxe/"), choose[template]
            if not own.exists() and (src / menu).exists():
                own.parent.mkdir(parents=True, exist_ok=True)
                own.write_text(edit((src / menu).read_text()))
        return tree

    def add_target(self, name: str, conf: str) -> None:
        """A node's own target, unless tgtd has it from config/tgt/ already."""
        shown = run(in_ns(self.ns, ["tgtadm", "--lld", "iscsi", "--mode", "target", "--op", "show"]), capture=True)
        if f": {name}\n" in shown.stdout:
            return
        f = self.work / f"tgt-{self.boots}.conf"
        f.write_text(conf)
        f.chmod(0o600)
        run(in_ns(self.ns, ["tgt-admin", "--conf", str(f), "--execute"]), capture=True)

    def layer(self, hostname: str, size_mib: int = 1024) -> Path:
        """The node's persistent layer (clones.py), made if missing, as `distonet clones` would."""
        from ..clones import make_layer
        return make_layer(self.layers_root / hostname, size_mib)[0]

    def boot(self, firmware: str, mode: str, *, hostname: str | None = None, mac: str = "52:54:00:12:34:56",
             marker: str = LOGIN, timeout: float = 400, console_session=None,
             swap: dict[str, Path] | None = None) -> BootResult:
        """PXE-boot one node until `marker` (then `console_session(socket)` is true). QEMU's DHCP
        gives it `hostname`; a failed iSCSI login ends the boot at once, reported in `failure`."""
        tree = self.tftp_tree(mode, mac, swap)
        name = f"pxe-{mode}/{firmware}"
        if mode in ("nfs-persistent", "iscsi-persistent") and hostname:
            self.layer(hostname)
        if mode == "iscsi-persistent" and hostname and self.node_target:
            self.add_target(*self.node_target(hostname))
        accel = pick_accel(self.ledger, self.paths.cache, self.out / "vmlinuz")
        console = self.work / f"console-{self.boots}.log"
        sock = self.work / f"serial-{self.boots}.sock" if console_session else None
        named = f",hostname={hostname}" if hostname else ""
        net = ["-netdev", f"user,id=net0,tftp={tree},bootfile={BOOTFILE[firmware]}{named}",
               "-device", f"virtio-net-pci,netdev=net0,mac={mac}", "-boot", "n"]
        machine = "bios" if firmware == "ipxe" else firmware
        argv = in_ns(self.ns, qemu_argv(accel, console, serial_socket=sock) + firmware_args(machine, self.work) + net)
        with log.step(f"boot {name} ({accel}), waiting for /{marker}/"):
            reached, seconds, failure = watch(self.ledger, argv, console, marker, timeout,
                                              after=(lambda: console_session(sock)) if sock else None,
                                              fail=ISCSI_FAILED)
        text = console.read_text(errors="replace") if console.exists() else ""
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            (self.log_dir / f"boot-{name.replace('/', '-')}.log").write_text(text)
        return BootResult(name, reached, round(seconds, 1), accel, text, failure=failure)


def lab_for(plan, log_dir: Path | None = None, **kw) -> Lab:
    """A Lab serving what `plan`'s recipe enables, at the paths its config/ files name."""
    from .. import netboot
    from .. import chap
    from ..outputs.config import ConfigOptions, tgt_text
    nb, recipe = plan.recipe.netboot, plan.name
    modes = {str(m) for m in nb.modes}
    opts = plan.recipe.enabled_outputs().get("config") or ConfigOptions()
    iscsi = bool(modes & set(netboot.ISCSI_MODES))
    fact = plan.facts.netboot.get("chap")

    def node_target(hostname: str) -> tuple[str, str]:
        host = [{"hostname": hostname, "mode": "iscsi-persistent"}]
        return (netboot.node_target_name(nb.iscsi.iqn, recipe, hostname),
                tgt_text(recipe, nb, opts, host, chap.read(fact) if fact else None, shared=False))
    return Lab(plan.out_dir, paths=plan.paths, log_dir=log_dir,
               export=netboot.export_path(nb.export, recipe) if modes & {"nfs", "nfs-persistent"} else None,
               layers=nb.layers.format(recipe=recipe) if modes & {"nfs-persistent", "iscsi-persistent"} else None,
               lun=opts.lun_path.format(recipe=recipe) if iscsi else None,
               tgt_conf=plan.out_dir / f"config/tgt/{recipe}.conf" if iscsi else None,
               node_target=node_target if "iscsi-persistent" in modes else None, **kw)
