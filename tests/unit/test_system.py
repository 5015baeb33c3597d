"""Users, groups and system settings: the commands, the files, and what they need refused."""

import os
from pathlib import Path

import pytest

from distonet.errors import BuildError
from distonet.stages.base import HostFacts, StageContext
from distonet.stages.system import System
from tests.helpers import keys, plan_of, write
from tests.recording import RecordingRunner

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0a2V5c3R1ZmZzdHVmZnN0dWZmc3R1ZmZzdHVmZg demo@lab"
HASH = "$6$saltsalt$" + "a" * 86


def tree(tmp_path) -> Path:
    root = tmp_path / "merged"
    for d in ("etc/sudoers.d", "usr/bin", "usr/sbin", "usr/share/zoneinfo/Europe", "home"):
        (root / d).mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\nsudo:x:27:\n")
    (root / "usr/share/zoneinfo/Europe/Paris").write_text("TZif")
    (root / "usr/bin/sudo").write_text("")
    (root / "usr/sbin/locale-gen").write_text("")
    (root / "etc/locale.gen").write_text("# en_GB.UTF-8 UTF-8\n# fr_FR.UTF-8 UTF-8\n")
    return root


def effects(root):
    def groupadd(argv):
        with open(root / "etc/group", "a") as fh:
            fh.write(f"{argv[-1]}:x:{1000 + len((root / 'etc/group').read_text().splitlines())}:\n")

    def useradd(argv):
        with open(root / "etc/passwd", "a") as fh:
            fh.write(f"{argv[-1]}:x:1000:1000::/home/{argv[-1]}:/bin/bash\n")
        (root / "home" / argv[-1]).mkdir()
    return {"groupadd": groupadd, "useradd": useradd}


def run_system(paths, tmp_path, monkeypatch, recipe_text):
    write(paths.recipes, "s", recipe_text)
    plan = plan_of("s", paths)
    stage = plan.stage("system")
    root = tree(tmp_path)
    monkeypatch.setattr(StageContext, "mount_for_writing", lambda self: root)
    monkeypatch.setattr(os, "chown", lambda *a: None)  # unit tests need no root
    runner = RecordingRunner(effects=effects(root))
    ctx = StageContext("system", stage.key, stage.inputs, (), tmp_path, HostFacts("m", tmp_path, tmp_path),
                       None, None, runner)
    return System.make(ctx), root, runner, plan


def test_users_groups_keys_sudo_and_settings(paths, tmp_path, monkeypatch):
    stamp, root, runner, plan = run_system(paths, tmp_path, monkeypatch, f"""extends: minimal
groups: [lab]
users:
  - {{name: demo, groups: [lab, video], ssh_keys: ['{KEY}'], sudo: true, password_hash: '{HASH}'}}
system: {{locale: en_GB.UTF-8, timezone: Europe/Paris, keyboard: fr, banner: "Lab {{example}} node"}}
""")
    assert [c[0] for c in runner.calls] == ["groupadd", "groupadd", "useradd", "chpasswd", "chroot"]
    assert runner.calls[2][-3:] == ("--groups", "lab,video", "demo")
    assert runner.inputs[3] == f"demo:{HASH}\n" and not any(HASH in a for c in runner.calls for a in c)
    assert (root / "home/demo/.ssh/authorized_keys").read_text() == KEY + "\n"
    assert oct((root / "etc/sudoers.d/distonet-demo").stat().st_mode & 0o777) == "0o440"
    assert "LANG=en_GB.UTF-8" in (root / "etc/default/locale").read_text()
    assert "en_GB.UTF-8 UTF-8" in (root / "etc/locale.gen").read_text().splitlines()
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/Europe/Paris"
    assert 'XKBLAYOUT="fr"' in (root / "etc/default/keyboard").read_text()
    assert (root / "etc/issue.net").read_text() == "Lab {example} node\n"
    assert stamp == {"users": ["demo"], "groups": ["lab", "video"]}
    assert list(keys(plan))[-2:] == ["system", "seal"]


def test_missing_packages_are_named(paths, tmp_path, monkeypatch):
    with pytest.raises(BuildError, match="system.timezone: no /usr/share/zoneinfo/Mars/Base"):
        run_system(paths, tmp_path, monkeypatch, "extends: minimal\nsystem: {timezone: Mars/Base}\n")


def test_no_settings_no_stage_and_secrets_stay_out_of_the_manifest(paths):
    assert "system" not in keys(plan_of("minimal", paths))
    write(paths.recipes, "p", f"extends: minimal\nusers: [{{name: demo, password_hash: '{HASH}'}}]\n")
    plan = plan_of("p", paths)
    assert plan.recipe.resolved()["users"][0]["password_hash"] == "<redacted>"
    from distonet.secrets import redact
    assert redact(dict(plan.stage("system").inputs))["users"][0]["password_hash"] == "<redacted>"
