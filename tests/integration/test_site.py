"""The example site: a hook makes an account, an overlay renders templates from the site file
with owners and modes from its metadata; one template edited re-runs only that overlay."""

import subprocess

import pytest

from distonet.manifest import Manifest
from tests.integration.conftest import distonet, plan_for, summary_states

pytestmark = pytest.mark.integration


def debugfs(image, command):
    return subprocess.run(["debugfs", "-R", command, str(image)], capture_output=True, text=True).stdout


def stat_of(image, path) -> dict:
    out = debugfs(image, f"stat {path}")
    first = out.splitlines()[0].split()  # Inode: N   Type: regular    Mode:  0644   Flags: …
    fields = {first[i].rstrip(":"): first[i + 1] for i in range(0, len(first) - 1, 2)}
    for line in out.splitlines()[:4]:
        parts = line.split()
        if parts and parts[0] == "User:":
            fields["User"], fields["Group"] = parts[1], parts[3]
    return fields


def test_example_site_hooks_overlay_and_a_template_change(minimal_plan, recipes, tmp_path):
    import shutil
    from distonet import PROJECT_ROOT
    site_root = tmp_path / "site"
    for d in ("overlays", "hooks", "sites"):
        shutil.copytree(PROJECT_ROOT / d, site_root / d)
    site_recipes = site_root / "recipes"
    shutil.copytree(recipes, site_recipes)
    proc = distonet("build", "example-site", recipes=site_recipes)
    plan = plan_for("example-site", site_recipes)
    image = plan.out_dir / "rootfs.img"
    motd = debugfs(image, "cat /etc/motd")
    assert motd.startswith("Example Lab — example-site (trixie, kernel 6.") and "it-support@example.invalid" in motd
    passwd = debugfs(image, "cat /etc/passwd")
    group = debugfs(image, "cat /etc/group")
    assert any(l.startswith("demo:") for l in passwd.splitlines())
    alice = next(l for l in passwd.splitlines() if l.startswith("alice:"))
    assert alice.endswith(":/home/alice:/bin/bash")
    assert 'XKBLAYOUT="fr"' in debugfs(image, "cat /etc/default/keyboard")
    lab_gid = next(l.split(":")[2] for l in group.splitlines() if l.startswith("lab:"))
    sshd = stat_of(image, "/etc/ssh/sshd_config.d/50-site.conf")
    assert sshd["Mode"] == "0600" and sshd["User"] == "0"
    srv = stat_of(image, "/srv/lab")
    assert srv["Mode"] == "02775" and srv["Group"] == lab_gid  # the hook's group, setgid as allowed
    assert stat_of(image, "/usr/local/bin/site-info")["Mode"] == "0755"
    m = Manifest.load(plan.out_dir)
    files = {f["path"]: f for f in m.overlay_files}
    assert files["etc/motd"]["source"] == "etc/motd.j2" and len(files["etc/motd"]["sha256"]) == 64
    assert m.site == "example"
    log = (plan.paths.cache / "logs" / "example-site.log").read_text()
    assert "site account: demo" in log

    (site_root / "overlays/lab-base/etc/issue.net.j2").write_text("{{ site_name }}: changed banner\n")
    changed = plan_for("example-site", site_recipes)
    from distonet.store import StageStore
    StageStore(changed.paths.stages).remove([changed.stage(n).key for n in ("overlay.lab-base", "system", "seal")])
    proc = distonet("build", "example-site", recipes=site_recipes)
    states = summary_states(proc.stderr)
    assert states["hooks.post-install"] == "cached" and states["packages.ssh"] == "cached"
    assert states["overlay.lab-base"] == "run" and states["system"] == "run" and states["seal"] == "run"
    assert debugfs(plan.out_dir / "rootfs.img", "cat /etc/issue.net") == "Example Lab: changed banner\n"

    (site_root / "overlays/lab-base/etc/issue.net.j2").write_text("{{ undefined_thing }}\n")
    proc = distonet("build", "example-site", recipes=site_recipes, check=False)
    assert proc.returncode == 2 and "issue.net.j2:1: undefined variable 'undefined_thing'" in proc.stderr
    assert "▶" not in proc.stderr  # refused before any step
    distonet("clean", "example-site", recipes=site_recipes)


def test_a_failing_hook_and_an_escaping_link_each_stop_the_build_in_one_line(minimal_plan, recipes, tmp_path):
    from distonet.store import StageStore
    from tests.integration.conftest import leftovers
    root = tmp_path / "site"
    (root / "recipes").mkdir(parents=True)
    hook = root / "hooks/chroot/broken/post-install/10-fail"
    hook.parent.mkdir(parents=True)
    hook.write_text("#!/bin/sh\necho about to fail\nexit 3\n")
    hook.chmod(0o755)
    (root / "recipes/hooked.yaml").write_text("extends: minimal\nhooks: [broken]\nreplace: [outputs]\n"
                                              "outputs: {kernel: {}}\n")
    proc = distonet("build", "hooked", recipes=root / "recipes", check=False)
    assert proc.returncode != 0
    errors = [l for l in proc.stderr.splitlines() if l.startswith("distonet: error:")]
    assert errors == [f"distonet: error: {root}/recipes/hooked.yaml: stage hooks.post-install: "
                      "hook broken/post-install/10-fail failed (exit 3):"], proc.stderr
    assert "about to fail" in proc.stderr  # its last lines
    plan = plan_for("hooked", root / "recipes")
    assert not StageStore(plan.paths.stages).done(plan.stage("hooks.post-install").key)
    assert not list(plan.paths.stages.glob("*.partial-*")) and leftovers(plan.paths) == []

    link = root / "overlays/evil/etc/shadow-link"
    link.parent.mkdir(parents=True)
    link.symlink_to("../../../../../etc/shadow")
    (root / "recipes/evil.yaml").write_text("extends: minimal\noverlays: [evil]\nreplace: [outputs]\n"
                                            "outputs: {kernel: {}}\n")
    proc = distonet("build", "evil", recipes=root / "recipes", check=False)
    assert proc.returncode != 0
    assert "stage overlay.evil: overlay evil: etc/shadow-link: the link → ../../../../../etc/shadow leads outside the image" \
        in proc.stderr, proc.stderr
    assert not list(plan.paths.stages.glob("*.partial-*")) and leftovers(plan.paths) == []


def make_signed_repo(root) -> tuple[str, "Path"]:
    """A one-package apt repository under `root`, signed with a key made here; returns its
    file:// URI and the exported public key."""
    import gzip
    import hashlib
    import os
    from pathlib import Path
    repo, pkg, home = root / "repo", root / "pkg", root / "gnupg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "usr/share/distonet-test").mkdir(parents=True)
    (pkg / "usr/share/distonet-test/hello").write_text("hello from the site repository\n")
    (pkg / "DEBIAN/control").write_text("Package: distonet-test-hello\nVersion: 1.0\nArchitecture: all\n"
                                        "Maintainer: Test <test@example.invalid>\nDescription: a test package\n")
    (repo / "pool").mkdir(parents=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(pkg), str(repo / "pool/hello_1.0_all.deb")],
                   check=True, capture_output=True)
    index = subprocess.run(["dpkg-scanpackages", "--multiversion", "pool"], cwd=repo, check=True,
                           capture_output=True).stdout
    d = repo / "dists/stable/main/binary-amd64"
    d.mkdir(parents=True)
    (d / "Packages").write_bytes(index)
    (d / "Packages.gz").write_bytes(gzip.compress(index))
    sums = "".join(f" {hashlib.sha256((d / f).read_bytes()).hexdigest()} {(d / f).stat().st_size} main/binary-amd64/{f}\n"
                   for f in ("Packages", "Packages.gz"))
    (repo / "dists/stable/Release").write_text(
        "Origin: distonet-test\nLabel: distonet-test\nSuite: stable\nCodename: stable\n"
        "Date: Sat, 01 Jan 2026 00:00:00 UTC\nArchitectures: amd64 all\nComponents: main\nSHA256:\n" + sums)
    home.mkdir(mode=0o700)
    env = dict(os.environ, GNUPGHOME=str(home))
    gpg = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run([*gpg, "--quick-gen-key", "distonet test <test@example.invalid>", "ed25519", "sign", "never"],
                   env=env, check=True, capture_output=True)
    subprocess.run([*gpg, "--clearsign", "-o", str(repo / "dists/stable/InRelease"), str(repo / "dists/stable/Release")],
                   env=env, check=True, capture_output=True)
    key = root / "keys" / "test-repo.asc"
    key.parent.mkdir()
    key.write_bytes(subprocess.run([*gpg, "--armor", "--export"], env=env, check=True, capture_output=True).stdout)
    subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True)  # our agent only
    return f"file://{repo}", key


def test_a_signed_site_repository_serves_a_layer(minimal_plan, tmp_path):
    from distonet.store import StageStore
    root = tmp_path / "site"
    (root / "recipes").mkdir(parents=True)
    uri, _ = make_signed_repo(root)
    recipe = ("extends: minimal\nrepositories:\n  - {name: testrepo, uri: '" + uri + "', suites: [stable], "
              "components: [main], key: test-repo.asc}\npackages: {site: [distonet-test-hello]}\n"
              "replace: [outputs]\noutputs: {rootfs: {}}\n")
    (root / "recipes/withrepo.yaml").write_text(recipe.replace("distonet-test-hello]", "distonet-test-helo]"))
    proc = distonet("build", "withrepo", recipes=root / "recipes", check=False)
    assert proc.returncode == 2 and "no package 'distonet-test-helo'" in proc.stderr \
        and "did you mean 'distonet-test-hello'" in proc.stderr  # checked against the extra repository too
    (root / "recipes/withrepo.yaml").write_text(recipe)
    distonet("build", "withrepo", recipes=root / "recipes")
    plan = plan_for("withrepo", root / "recipes")
    image = plan.out_dir / "rootfs.img"
    assert debugfs(image, "cat /usr/share/distonet-test/hello") == "hello from the site repository\n"
    sources = debugfs(image, "cat /etc/apt/sources.list.d/distonet-testrepo.sources")
    assert "Signed-By: /etc/apt/keyrings/distonet-testrepo.asc" in sources and "Enabled: no" in sources
    assert "BEGIN PGP PUBLIC KEY BLOCK" in debugfs(image, "cat /etc/apt/keyrings/distonet-testrepo.asc")
    layer = StageStore(plan.paths.stages).tree(plan.stage("packages.site").key)
    assert not (layer / str(tmp_path).lstrip("/")).exists()  # the bind mount's point left no trace
    distonet("clean", "withrepo", recipes=root / "recipes")


def test_a_local_deb_is_installed_and_leaves_no_copy(minimal_plan, tmp_path):
    root = tmp_path / "site"
    (root / "recipes").mkdir(parents=True)
    make_signed_repo(root)
    (root / "debs").mkdir()
    (root / "repo/pool/hello_1.0_all.deb").rename(root / "debs/hello_1.0_all.deb")
    (root / "recipes/localdeb.yaml").write_text("extends: minimal\napt: {debs: [hello_1.0_all.deb]}\n"
                                                "replace: [outputs]\noutputs: {rootfs: {}}\n")
    proc = distonet("build", "localdeb", recipes=root / "recipes")
    assert summary_states(proc.stderr)["packages.local"] == "run"
    plan = plan_for("localdeb", root / "recipes")
    image = plan.out_dir / "rootfs.img"
    assert debugfs(image, "cat /usr/share/distonet-test/hello") == "hello from the site repository\n"
    assert "distonet-debs" not in debugfs(image, "ls /run")
    distonet("clean", "localdeb", recipes=root / "recipes")
