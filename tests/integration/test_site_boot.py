"""A site image with everything a site adds: two layers (one from a signed file:// repository the
test makes), the example overlay (templates, owners and modes), a hook, users, and two
diskimage-builder elements. It is booted, and the proof is read inside the running guest,
logged in as root on the serial console."""

import shutil
import subprocess

import pytest

from tests.integration.conftest import distonet, plan_for
from tests.integration.test_site import make_signed_repo

pytestmark = pytest.mark.integration

PASSWORD = "distonet-test"


def test_a_site_image_boots_with_its_overlay_hook_repository_and_elements(minimal_plan, recipes, tmp_path):
    from distonet import PROJECT_ROOT
    from distonet.boot.qemu import boot_disk
    from distonet.boot.serial import SerialSession
    root = tmp_path / "site"
    for d in ("overlays", "hooks", "sites"):
        shutil.copytree(PROJECT_ROOT / d, root / d)
    shutil.copytree(recipes, root / "recipes")
    uri, _ = make_signed_repo(root)
    crypt = subprocess.run(["openssl", "passwd", "-6", PASSWORD], capture_output=True, text=True,
                           check=True).stdout.strip()
    (root / "recipes/site-full.yaml").write_text(
        "extends: example-site\n"
        f"access: {{root_password_hash: '{crypt}'}}\n"
        "repositories:\n"
        f"  - {{name: testrepo, uri: '{uri}', suites: [stable], components: [main], key: test-repo.asc}}\n"
        "packages: {site: [distonet-test-hello], tools: [tree]}\n"
        "dib:\n"
        "  elements: [devuser, dhcp-all-interfaces]\n"
        "  environment: {DIB_DEV_USER_USERNAME: dev, DIB_DEV_USER_SHELL: /bin/bash, DIB_DEV_USER_PWDLESS_SUDO: 'yes'}\n"
        "replace: [outputs]\noutputs: {rootfs: {}, kernel: {}, disk: {}}\n")
    distonet("build", "site-full", recipes=root / "recipes")
    plan = plan_for("site-full", root / "recipes")
    assert [s.name for s in plan.stages if s.name.startswith(("packages.", "elements", "overlay", "hooks"))] == [
        "packages.kernel", "packages.base", "packages.ssh", "packages.site", "packages.tools",
        "hooks.post-install", "elements", "overlay.lab-base"]

    seen: dict[str, tuple[int, str]] = {}
    checks = {
        "motd": "cat /etc/motd",
        "sshd": "stat -c '%a %U %G' /etc/ssh/sshd_config.d/50-site.conf",
        "srv": "stat -c '%a %U %G' /srv/lab",
        "site-info": "stat -c '%a' /usr/local/bin/site-info",
        "users": "id -nG alice; id -un demo; getent passwd dev",
        "sudo": "cat /etc/sudoers.d/dev; stat -c '%a' /etc/sudoers.d/dev",
        "repo": "cat /usr/share/distonet-test/hello",
        "layer": "command -v tree",
        "dhcp": "systemctl list-units --all --no-legend --plain 'dhcp-interface@*'; "
                "grep -c 'inet dhcp' /etc/network/interfaces",
        "build-leftovers": "ls -A /tmp/in_target.d /usr/sbin/policy-rc.d 2>&1 | wc -l; ls /usr/local/bin",
    }

    def session(sock) -> bool:
        s = SerialSession(sock)
        try:
            s.login("root", PASSWORD)
            for name, command in checks.items():
                seen[name] = s.run(command)
            s.send("poweroff\n")
        finally:
            s.close()
        return True

    result = boot_disk(plan.out_dir / "disk.raw", "bios", kernel=plan.out_dir / "vmlinuz",
                       name="site-full/bios", paths=plan.paths, console_session=session)
    assert result.reached, result.console[-2000:]
    out = {k: v[1] for k, v in seen.items()}
    assert out["motd"].startswith("Example Lab — site-full (trixie, kernel 6."), out["motd"]
    assert out["sshd"].strip() == "600 root root"
    assert out["srv"].strip() == "2775 root lab"                  # the overlay's metadata
    assert out["site-info"].strip() == "755"
    alice_groups, demo, dev = out["users"].strip().splitlines()
    assert "lab" in alice_groups.split() and demo == "demo"     # users: and the hook's account
    assert dev.startswith("dev:") and dev.endswith(":/home/dev:/bin/bash")  # devuser element
    assert "dev ALL=(ALL) NOPASSWD:ALL" in out["sudo"] and out["sudo"].strip().endswith("440")
    assert out["repo"] == "hello from the site repository\n"
    assert out["layer"].strip() == "/usr/bin/tree"
    dhcp_units, dhcp_stanzas = out["dhcp"].strip().rsplit("\n", 1)
    assert "dhcp-interface@" in dhcp_units and int(dhcp_stanzas) >= 1  # dhcp-all-interfaces ran at boot
    leftovers, local_bin = out["build-leftovers"].split("\n", 1)
    assert leftovers.strip() == "2" and "package-installs" not in local_bin  # two "cannot access" lines
    distonet("clean", "site-full", recipes=root / "recipes")
