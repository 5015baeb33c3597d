"""system: groups, users (keys, sudo, password hash), locale, time zone, keyboard and the login
banner — the settings a site gives every machine made from a master. Keyed by exactly these
recipe sections; it runs after the overlays and hooks and before seal."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import BuildError
from ..imagefs import entries, ids
from .base import StageContext, StageKind


class System(StageKind):
    kind = "system"
    doc = "users, groups and system settings"
    order = 90
    version = 1
    tools = ("groupadd", "useradd", "chpasswd")

    @classmethod
    def instances(cls, recipe, facts):
        settings = recipe.system.model_dump(mode="json", exclude_none=True)
        if recipe.users or recipe.groups or settings:
            yield "system", {"groups": list(recipe.groups), "system": settings,
                             "users": [u.model_dump(mode="json") for u in recipe.users]}

    @classmethod
    def make(cls, ctx: StageContext) -> dict:
        root = ctx.mount_for_writing()
        run = ctx.runner
        groups = list(dict.fromkeys([*ctx.inputs["groups"], *(g for u in ctx.inputs["users"] for g in u["groups"])]))
        for g in groups:
            if g not in entries(root, "group"):
                run(["groupadd", "--root", str(root), g])
        for u in ctx.inputs["users"]:
            make_user(root, u, run)
        settings = ctx.inputs["system"]
        if "locale" in settings:
            set_locale(root, settings["locale"], run)
        if "timezone" in settings:
            set_timezone(root, settings["timezone"])
        if "keyboard" in settings:
            layouts = settings["keyboard"]
            (root / "etc/default").mkdir(parents=True, exist_ok=True)
            (root / "etc/default/keyboard").write_text(
                f'# made by distonet (system.keyboard)\nXKBMODEL="pc105"\nXKBLAYOUT="{layouts}"\n'
                'XKBVARIANT=""\nXKBOPTIONS=""\nBACKSPACE="guess"\n')
        if "banner" in settings:
            text = settings["banner"].rstrip("\n") + "\n"
            (root / "etc/issue").write_text(text + "\n")
            (root / "etc/issue.net").write_text(text)
        return {"users": [u["name"] for u in ctx.inputs["users"]], "groups": groups}


def make_user(root: Path, u: dict, run) -> None:
    name = u["name"]
    if name not in entries(root, "passwd"):
        argv = ["useradd", "--root", str(root), "--create-home", "--shell", u["shell"]]
        argv += ["--uid", str(u["uid"])] if u.get("uid") else []
        argv += ["--groups", ",".join(u["groups"])] if u["groups"] else []
        run([*argv, name])
    if u.get("password_hash"):  # on stdin: never on a command line
        run(["chpasswd", "--root", str(root), "--encrypted"], input=f"{name}:{u['password_hash']}\n")
    uid, gid = ids(root, name, "passwd"), ids(root, name, "passwd", field=3)
    home = root / "home" / name
    if u["ssh_keys"]:
        ssh = home / ".ssh"
        ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh / "authorized_keys").write_text("".join(k.strip() + "\n" for k in u["ssh_keys"]))
        for p in (ssh, ssh / "authorized_keys"):
            os.chown(p, uid, gid)
        ssh.chmod(0o700)
        (ssh / "authorized_keys").chmod(0o600)
    if u["sudo"]:
        if not (root / "usr/bin/sudo").exists():
            raise BuildError(f"users.{name}.sudo: the image has no sudo",
                             hint="add the sudo package to a layer (packages:)")
        f = root / "etc/sudoers.d" / f"distonet-{name}"
        f.write_text(f"# made by distonet (users.{name}.sudo)\n{name} ALL=(ALL:ALL) ALL\n")
        f.chmod(0o440)


def set_locale(root: Path, locale: str, run) -> None:
    (root / "etc/default").mkdir(parents=True, exist_ok=True)
    (root / "etc/default/locale").write_text(f"# made by distonet (system.locale)\nLANG={locale}\n")
    if locale in ("C.UTF-8", "C", "POSIX"):
        return
    gen = root / "etc/locale.gen"
    if not (root / "usr/sbin/locale-gen").exists() or not gen.exists():
        raise BuildError(f"system.locale: {locale} needs the locales package",
                         hint="add locales to a layer, or use C.UTF-8")
    charset = locale.split(".", 1)[1] if "." in locale else "ISO-8859-1"
    line = f"{locale} {charset}"
    lines = gen.read_text().splitlines()
    if line not in lines:
        lines = [l for l in lines if l.lstrip("# ").strip() != line] + [line]
        gen.write_text("\n".join(lines) + "\n")
    run(["chroot", str(root), "locale-gen"])


def set_timezone(root: Path, zone: str) -> None:
    if not (root / "usr/share/zoneinfo" / zone).is_file():
        raise BuildError(f"system.timezone: no /usr/share/zoneinfo/{zone} in the image",
                         hint="add tzdata to a layer, and check the zone's name (Europe/Paris, UTC …)")
    link = root / "etc/localtime"
    if link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(f"/usr/share/zoneinfo/{zone}")
    (root / "etc/timezone").write_text(zone + "\n")
