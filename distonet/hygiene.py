"""Image hygiene: what a sealed image and its artifacts must never carry, checked on a build.

In the image: no build-host identity (a machine-id, ssh host keys, the host's resolv.conf or
host name, an apt proxy or credentials), root locked unless the recipe opens it, sshd's
password login off unless the recipe opens it, no world-readable secret (shadow, private keys,
CHAP secrets), and the SBOM naming exactly the packages dpkg says are installed. Beside it: no
artifact holding a secret is world-readable, no manifest carries one, the root's NFS export is
read-only. `distonet verify` runs these on every build it verifies.
"""

from __future__ import annotations

import json
import re
import socket
import stat
from pathlib import Path

# Private keys, tgt's and open-iscsi's CHAP settings, the initramfs' CHAP file, crypt(3) hashes.
SECRET_RE = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----|^\s*(incominguser|outgoinguser)\s|"
                       rb"^\s*node\.session\.auth\.password(_in)?\s*=\s*\S|^\s*ISCSI_(IN_)?PASSWORD=|"
                       rb"\$(1|5|6|y|2[aby])\$[^:\s]{4,}", re.M)
SECRET_FILES = ("etc/shadow", "etc/gshadow", "etc/shadow-", "etc/gshadow-")


def check_tree(root: Path, recipe: dict) -> list[str]:
    """Problems of the sealed image mounted at `root`, for its resolved recipe."""
    problems = []
    etc = root / "etc"
    machine_id = etc / "machine-id"
    if machine_id.is_file() and machine_id.read_text().strip():
        problems.append("etc/machine-id is not empty: every clone would share the build's machine id")
    dbus = root / "var/lib/dbus/machine-id"
    if dbus.is_file() and not dbus.is_symlink():
        problems.append("var/lib/dbus/machine-id is a file: clones would share it")
    keys = sorted(p.name for p in (etc / "ssh").glob("ssh_host_*")) if (etc / "ssh").is_dir() else []
    if keys:
        problems.append(f"ssh host keys in the image ({', '.join(keys)}): every clone would share them")
    resolv = etc / "resolv.conf"
    host_resolv = Path("/etc/resolv.conf")
    if resolv.is_file() and not resolv.is_symlink() and host_resolv.is_file() \
            and resolv.read_bytes().strip() and resolv.read_bytes() == host_resolv.read_bytes():
        problems.append("etc/resolv.conf is the build host's")
    hostname = etc / "hostname"
    wanted = recipe.get("hostname")
    if hostname.is_file():
        name = hostname.read_text().strip()
        if name == socket.gethostname() and name != wanted:
            problems.append(f"etc/hostname is the build host's name ({name})")
        elif wanted and name != wanted:
            problems.append(f"etc/hostname is {name!r}, the recipe says {wanted!r}")
    problems += _apt(etc)
    problems += _root_login(etc, recipe.get("access") or {})
    problems += _sshd(root, recipe.get("access") or {})
    problems += _readable_secrets(root)
    return problems


def _apt(etc: Path) -> list[str]:
    problems = []
    for f in sorted((etc / "apt/apt.conf.d").glob("*")) if (etc / "apt/apt.conf.d").is_dir() else []:
        if f.is_file() and re.search(r"(?i)Acquire::[a-z]+::Proxy", f.read_text(errors="replace")):
            problems.append(f"etc/apt/apt.conf.d/{f.name} names an apt proxy (the build's)")
    for f in [etc / "apt/auth.conf", *sorted((etc / "apt/auth.conf.d").glob("*"))]:
        if f.is_file() and f.read_text(errors="replace").strip():
            problems.append(f"{f.relative_to(etc.parent)} holds archive credentials")
    return problems


def _root_login(etc: Path, access: dict) -> list[str]:
    shadow = etc / "shadow"
    if not shadow.is_file():
        return ["etc/shadow is missing"]
    for line in shadow.read_text(errors="replace").splitlines():
        fields = line.split(":")
        if fields[0] == "root" and len(fields) > 1:
            locked = fields[1].startswith(("!", "*"))
            if fields[1] == "":
                return ["root has an empty password: anyone can log in"]
            if not locked and not access.get("root_password_hash"):
                return ["root has a password the recipe did not give (access.root_password_hash)"]
            return []
    return ["etc/shadow has no root entry"]


def sshd_password_login(root: Path) -> bool | None:
    """Whether sshd takes passwords, as sshd reads its configuration (the first value set wins,
    the drop-ins first where sshd_config includes them); None without sshd."""
    if not (root / "usr/sbin/sshd").exists():
        return None
    files = sorted((root / "etc/ssh/sshd_config.d").glob("*.conf"))
    files.append(root / "etc/ssh/sshd_config")
    for f in files:
        if not f.is_file():
            continue
        for line in f.read_text(errors="replace").splitlines():
            words = line.split()
            if len(words) >= 2 and words[0].lower() == "match":
                break                   # what follows applies to some clients only
            if len(words) >= 2 and words[0].lower() == "passwordauthentication":
                return words[1].lower() == "yes"
    return True                         # sshd's own default


def _sshd(root: Path, access: dict) -> list[str]:
    if sshd_password_login(root) and not access.get("ssh_password_login"):
        return ["sshd accepts passwords (PasswordAuthentication); the recipe did not open it "
                "(access.ssh_password_login)"]
    return []


def _readable_secrets(root: Path) -> list[str]:
    problems = []
    for rel in SECRET_FILES:
        f = root / rel
        if f.is_file() and not f.is_symlink() and f.stat().st_mode & stat.S_IROTH:
            problems.append(f"{rel} is world-readable")
    for top in ("etc", "root", "home", "srv"):
        base = root / top
        for f in base.rglob("*") if base.is_dir() else []:
            try:
                st = f.lstat()
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_IROTH and st.st_size < 1 << 20 \
                    and f.relative_to(root).as_posix() not in SECRET_FILES:
                if SECRET_RE.search(f.read_bytes()):
                    problems.append(f"{f.relative_to(root)} holds a secret and is world-readable")
    return problems


def check_sbom(root: Path, sbom: Path) -> list[str]:
    """The SBOM's packages are exactly dpkg's installed ones, versions included."""
    installed = set()
    status = root / "var/lib/dpkg/status"
    for para in status.read_text(errors="replace").split("\n\n") if status.is_file() else []:
        fields = dict(re.findall(r"(?m)^([A-Za-z-]+): (.*)$", para))
        if fields.get("Status", "").endswith(" installed"):
            installed.add((fields["Package"], fields.get("Version", "")))
    doc = json.loads(sbom.read_text())
    listed = {(p["name"], p.get("versionInfo", "")) for p in doc.get("packages", [])
              if p.get("SPDXID") != "SPDXRef-Image"}
    problems = []
    if installed - listed:
        problems.append(f"the SBOM lacks {len(installed - listed)} installed package(s), e.g. "
                        f"{sorted(installed - listed)[0]}")
    if listed - installed:
        problems.append(f"the SBOM names {len(listed - installed)} package(s) not installed, e.g. "
                        f"{sorted(listed - installed)[0]}")
    return problems


def check_artifacts(build: Path, artifacts, resolved: dict, recipe: str) -> list[str]:
    """Beside the image: secrets only in files others cannot read; the manifest none; the
    root's NFS export read-only."""
    problems = []
    for a in artifacts:
        f = build / a.path
        if f.is_file() and f.stat().st_size < 1 << 20 and f.stat().st_mode & stat.S_IROTH \
                and SECRET_RE.search(f.read_bytes()):
            problems.append(f"{a.path} holds a secret and is world-readable")
    manifest = build / "manifest.json"
    if manifest.is_file() and SECRET_RE.search(manifest.read_bytes()):
        problems.append("manifest.json carries a secret (a password hash or a key)")
    exports = build / "config" / "exports"
    if exports.is_file():
        from .netboot import export_path
        root_export = export_path((resolved.get("netboot") or {}).get("export"), recipe)
        for line in exports.read_text().splitlines():
            words = line.split()
            if words and words[0] == root_export and "(ro," not in line and "(ro)" not in line:
                problems.append(f"config/exports: {root_export} is not exported read-only")
    return problems
