"""CHAP credentials of a recipe's iSCSI target, and how they reach the node without the kernel
command line (which every user of the booted node can read in /proc/cmdline).

The credentials live in secrets/iscsi/<recipe>.yaml (mode 0600), made with random secrets the
first time a recipe with the iscsi mode is planned; a site may write its own there. The plan keeps
only the file's digest. The node gets them in a small cpio loaded after the initrd
(pxe/iscsi/<recipe>.cpio): the kernel unpacks it over the initramfs, where open-iscsi's script
reads /etc/iscsi.initramfs; after switch_root that memory is gone. The site's tgt configuration
(config/tgt/<recipe>.conf, 0600) holds the same secrets.
"""

from __future__ import annotations

import hashlib
import os
import secrets as _random
import string
from pathlib import Path

import yaml

from .enums import Chap
from .errors import BuildError, RecipeError

KEYS = ("user", "secret", "target_user", "target_secret")
ALPHABET = string.ascii_letters + string.digits


def credentials_file(secrets_dir: Path, recipe: str) -> Path:
    return Path(secrets_dir) / "iscsi" / f"{recipe}.yaml"


def _new(recipe: str) -> dict:
    def word() -> str:  # 16 characters: what every initiator accepts (RFC 3720 asks for 12 or more)
        return "".join(_random.choice(ALPHABET) for _ in range(16))
    return {"user": recipe, "secret": word(), "target_user": f"{recipe}-target", "target_secret": word()}


def facts(secrets_dir: Path, recipe: str, chap: Chap) -> dict | None:
    """{file, digest} of the recipe's credentials, made now if missing; None without CHAP."""
    if chap == Chap.none:
        return None
    path = credentials_file(secrets_dir, recipe)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("# CHAP credentials of the iSCSI target; made by distonet, yours to change\n")
            yaml.safe_dump(_new(recipe), f, sort_keys=False)
    data = path.read_bytes()
    load(path, data)
    return {"file": str(path), "digest": hashlib.sha256(data).hexdigest()}


def load(path: Path, data: bytes | None = None) -> dict:
    path = Path(path)
    if path.stat().st_mode & 0o077:
        raise RecipeError(f"{path}: readable by others (mode {path.stat().st_mode & 0o777:o})",
                          hint=f"chmod 600 {path}")
    try:
        creds = yaml.safe_load(data if data is not None else path.read_bytes()) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    for key in KEYS:
        value = creds.get(key) if isinstance(creds, dict) else None
        if not isinstance(value, str) or not value or not all(c in ALPHABET + "._-" for c in value):
            raise RecipeError(f"{path}: {key}: missing or not a plain word (letters, digits, . _ -)",
                              hint="delete the file to have new credentials made")
    return {k: creds[k] for k in KEYS}


def read(fact: dict) -> dict:
    """The credentials the plan was made with (the file may not change between plan and build)."""
    data = Path(fact["file"]).read_bytes()
    if hashlib.sha256(data).hexdigest() != fact["digest"]:
        raise BuildError(f"{fact['file']} changed since the build was planned", hint="run the build again")
    return load(Path(fact["file"]), data)


def initramfs_conf(creds: dict, chap: Chap) -> str:
    """/etc/iscsi.initramfs as open-iscsi's initramfs script sources it."""
    lines = ["# distonet: CHAP credentials for the iSCSI root (from a cpio beside the initrd)",
             f"ISCSI_USERNAME='{creds['user']}'", f"ISCSI_PASSWORD='{creds['secret']}'"]
    if chap == Chap.mutual:
        lines += [f"ISCSI_IN_USERNAME='{creds['target_user']}'", f"ISCSI_IN_PASSWORD='{creds['target_secret']}'"]
    return "\n".join(lines) + "\n"


def ipxe_settings(creds: dict, chap: Chap) -> str:
    """The iPXE script that sets the CHAP settings before its own iSCSI login (an iBFT entry);
    iPXE puts them in the iBFT, where only root on the node can read them."""
    lines = ["#!ipxe", "# distonet: CHAP credentials for iPXE's iSCSI login (chained by the iBFT entries)",
             f"set username {creds['user']}", f"set password {creds['secret']}"]
    if chap == Chap.mutual:
        lines += [f"set reverse-username {creds['target_user']}", f"set reverse-password {creds['target_secret']}"]
    return "\n".join(lines) + "\n"


def cpio(runner, files: dict[str, str], dest: Path, work: Path) -> None:
    """A newc cpio of `files` (path in the initramfs → text), owned by root, reproducible."""
    tree = work / "cpio"
    for rel, text in files.items():
        f = tree / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
        f.chmod(0o600)
    names = sorted({p.relative_to(tree).as_posix() for p in tree.rglob("*")})
    for p in [tree, *tree.rglob("*")]:
        os.utime(p, (0, 0))
    runner(["cpio", "--create", "--format=newc", "--reproducible", "--owner=0:0", "--quiet",
            "--directory", str(tree), "--file", str(dest)], input="\n".join(names) + "\n")
