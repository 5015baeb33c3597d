"""Publishing to a file share: the layout, `latest` switched only after a verified copy, resume
after an interruption, retention that spares `latest`, refusal of builds that failed (or never
had) a boot test, the GPG signature. Real files, cp, sha256sum and gpg; a runner that breaks
copies stands in for a crash or a share that corrupts."""

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from distonet.errors import BuildError, DistonetError
from distonet.host.run import run
from distonet.manifest import FORMAT_VERSION, Artifact, BootRecord, Manifest
from distonet.publish import publish, share_for

SHARE_FILES = {"rootfs.img": b"R" * 300_000, "pxe/boot.ipxe": b"#!ipxe\n", "disk.qcow2": b"Q" * 70_000}


def build(out: Path, build_id: str, built_at: str, boots=(("disk", "bios", True),), salt=b"") -> Path:
    out.mkdir(parents=True, exist_ok=True)
    arts = []
    for rel, data in SHARE_FILES.items():
        f = out / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data + salt)
        arts.append(Artifact(rel.split(".")[-1], rel, f.stat().st_size, hashlib.sha256(data + salt).hexdigest()))
    m = Manifest(recipe="node", build_id=build_id, built_at=built_at, distonet_version="0", resolved_recipe={},
                 mirror="", archive_state="", root_uuid="", kernel_cmdline=[], stages=[], outputs=[], packages=[],
                 artifacts=arts, boots=[BootRecord(a, f, ok, 1.0, "tcg", built_at) for a, f, ok in boots])
    assert m.format_version == FORMAT_VERSION
    m.save(out)
    return out


def test_layout_latest_and_checksums(tmp_path):
    share = tmp_path / "share"
    r1 = publish(build(tmp_path / "b1", "id1", "2026-11-01T00:00:00"), str(share))
    r2 = publish(build(tmp_path / "b2", "id2", "2026-11-02T00:00:00", salt=b"2"), str(share))
    top = share / "node"
    assert sorted(p.name for p in top.iterdir() if not p.name.startswith(".")) == ["id1", "id2", "index.html", "latest"]
    assert (top / "id1/report.html").is_file() and (top / "id2/report.html").is_file()    # buildreport.py
    assert 'href="id1/report.html"' in (top / "index.html").read_text()
    assert os.readlink(top / "latest") == "id2" and r2.copied > 0 and not r1.already
    for build_dir in ("id1", "id2", "latest"):   # sha256sum -c accepts every build, and latest
        subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=top / build_dir, check=True)
    assert (top / "id2/pxe/boot.ipxe").read_bytes() == b"#!ipxe\n2"
    again = publish(tmp_path / "b2", str(share))
    assert again.already and again.copied == 0


def test_retention_keeps_the_newest_and_never_latest(tmp_path):
    share = tmp_path / "share"
    for i in range(1, 4):
        publish(build(tmp_path / f"b{i}", f"id{i}", f"2026-11-0{i}T00:00:00", salt=bytes([i])), str(share), keep=2)
    top = share / "node"
    assert share_for(str(share)).builds("node") == ["id2", "id3"]
    # publishing an older build again (a rollback) points latest at it: keep=1 spares it too
    r = publish(tmp_path / "b2", str(share), keep=1)
    assert r.already and os.readlink(top / "latest") == "id2" and r.removed == []
    assert share_for(str(share)).builds("node") == ["id2", "id3"]
    r = publish(build(tmp_path / "b4", "id4", "2026-11-04T00:00:00", salt=b"4"), str(share), keep=1)
    assert os.readlink(top / "latest") == "id4" and r.removed == ["id3", "id2"]
    assert share_for(str(share)).builds("node") == ["id4"]
    assert not list(top.glob(".trash-*")) and not list(top.glob(".partial-*"))


def test_an_interrupted_publish_shows_nothing_and_resumes(tmp_path):
    share = tmp_path / "share"
    publish(build(tmp_path / "b1", "id1", "2026-11-01T00:00:00"), str(share))
    out = build(tmp_path / "b2", "id2", "2026-11-02T00:00:00", salt=b"2")
    calls = []

    def crash_on_second_copy(argv, **kw):
        calls.append(argv)
        if argv[0] == "cp" and len([c for c in calls if c[0] == "cp"]) == 2:
            raise KeyboardInterrupt       # as a SIGINT mid-copy would
        return run(argv, **kw)
    with pytest.raises(KeyboardInterrupt):
        publish(out, str(share), runner=crash_on_second_copy)
    top = share / "node"
    assert share_for(str(share)).builds("node") == ["id1"] and os.readlink(top / "latest") == "id1"
    assert (top / ".partial-id2").is_dir()                 # hidden, not a build
    resumed = publish(out, str(share))
    assert resumed.kept > 0 and resumed.copied < sum(len(d) for d in SHARE_FILES.values()) + 10_000
    assert os.readlink(top / "latest") == "id2" and not (top / ".partial-id2").exists()


def test_a_copy_the_share_corrupts_is_not_published(tmp_path):
    share = tmp_path / "share"
    out = build(tmp_path / "b1", "id1", "2026-11-01T00:00:00")

    def corrupting(argv, **kw):
        result = run(argv, **kw)
        if argv[0] == "cp" and argv[-2].endswith("rootfs.img"):
            with open(argv[-1], "r+b") as fh:
                fh.write(b"X")
        return result
    with pytest.raises(BuildError, match="does not match the manifest"):
        publish(out, str(share), runner=corrupting)
    assert share_for(str(share)).builds("node") == [] and not (share / "node/latest").exists()


@pytest.mark.parametrize("boots, message", [((), "never boot-tested"),
                                            ((("disk", "bios", True), ("disk", "uefi", False)), "disk/uefi")])
def test_an_untested_or_failed_build_is_refused_unless_forced(tmp_path, boots, message):
    out = build(tmp_path / "b1", "id1", "2026-11-01T00:00:00", boots=boots)
    with pytest.raises(DistonetError, match=message):
        publish(out, str(tmp_path / "share"))
    assert not (tmp_path / "share/node").exists()
    assert publish(out, str(tmp_path / "share"), force=True).build_id == "id1"


def test_unknown_shares_are_refused_with_a_hint():
    with pytest.raises(DistonetError, match="not a share distonet knows"):
        share_for("relative/path")


def test_ssh_shares_and_the_commands_they_run(tmp_path):
    from distonet.publish import RsyncShare
    from tests.recording import RecordingRunner
    a = share_for("ssh://builds@files.example.invalid:2222/srv/builds/", ("-i", "/k"))
    assert isinstance(a, RsyncShare) and (a.host, a.port, a.path) == ("builds@files.example.invalid", 2222, "/srv/builds")
    b = share_for("files.example.invalid:/srv/builds")
    assert (b.host, b.port, b.path) == ("files.example.invalid", None, "/srv/builds")
    out = build(tmp_path / "b1", "id1", "2026-11-01T00:00:00")
    runner = RecordingRunner(answers={"rsync": "Total bytes sent: 12,345\n"}, fail="ssh -p 2222 -i /k builds@files.example.invalid test")
    r = a.publish(out, Manifest.load(out), keep=3, runner=runner)
    probe, rsync, finish = runner.calls
    assert probe[-3:] == ("test", "-f", "/srv/builds/node/id1/manifest.json")
    assert rsync[:6] == ("rsync", "--archive", "--sparse", "--partial", "--mkpath", "-e")
    assert rsync[6] == "ssh -p 2222 -i /k" and rsync[-1] == "builds@files.example.invalid:/srv/builds/node/.partial-id1/"
    assert finish[:5] == ("ssh", "-p", "2222", "-i", "/k") and finish[-3:] == ("/srv/builds/node", "id1", "3")
    assert r.copied == 12345


def test_the_signature_verifies_with_gpg(tmp_path):
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "builds@example.invalid",
                        "ed25519", "sign", "never"], env=env, check=True, capture_output=True)
        out = build(tmp_path / "b1", "id1", "2026-11-01T00:00:00")
        publish(out, str(tmp_path / "share"), sign_key="builds@example.invalid", gnupg_home=str(home))
        d = tmp_path / "share/node/latest"
        subprocess.run(["gpg", "--batch", "--verify", str(d / "SHA256SUMS.asc"), str(d / "SHA256SUMS")],
                       env=env, check=True, capture_output=True)
        (d / "SHA256SUMS").write_text((d / "SHA256SUMS").read_text().replace("rootfs", "rootfx"))
        assert subprocess.run(["gpg", "--batch", "--verify", str(d / "SHA256SUMS.asc"), str(d / "SHA256SUMS")],
                              env=env, capture_output=True).returncode != 0
    finally:   # gpg started an agent for this home: it is the test's to end
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True)


def test_settings_from_the_command_line_or_the_site_file():
    from distonet.publish import settings
    site = {"publish": {"share": "/srv/builds", "keep": 3, "sign_key": "k@example.invalid"}}
    assert settings(site).share == "/srv/builds" and settings(site).keep == 3
    assert settings(site, share="/mnt/other", keep=9).share == "/mnt/other"
    assert settings(site, keep=9).keep == 9 and settings(site).sign_key == "k@example.invalid"
    with pytest.raises(DistonetError, match="no share given"):
        settings({})
    with pytest.raises(DistonetError, match=r"sites/lab.yaml: publish.kep: unknown key"):
        settings({"publish": {"share": "/x", "kep": 2}}, where="sites/lab.yaml")
    with pytest.raises(DistonetError, match="publish.keep"):
        settings({"publish": {"share": "/x", "keep": 0}})


def test_doit_publish_task_follows_the_manifest(paths):
    from distonet.tasks import make_tasks
    from tests.helpers import plan_of
    tasks = {f"{t['basename']}:{t['name']}": t for t in make_tasks(plan_of("minimal", paths))}
    assert tasks["publish:minimal"]["task_dep"] == ["manifest:minimal"]


def test_fetch_from_a_file_share(tmp_path):
    from distonet.publish import fetch
    share = tmp_path / "share"
    publish(build(tmp_path / "b1", "id1", "2026-11-01T00:00:00"), str(share))
    got = fetch(str(share), "node", dest=tmp_path / "here")
    assert got == tmp_path / "here/node-id1" and (got / "pxe/boot.ipxe").read_bytes() == b"#!ipxe\n"
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=got, check=True)
    assert fetch(str(share), "node", "id1", tmp_path / "here") == got      # already here
    with pytest.raises(DistonetError, match="no published build there"):
        fetch(str(share), "node", "id9", tmp_path / "here")


def test_oci_share_specs():
    from distonet.oci import OciShare, media_type
    assert share_for("oci://registry.example.org/lab/builds") == OciShare("registry.example.org", "lab/builds", False)
    assert share_for("oci+http://127.0.0.1:5000/lab") == OciShare("127.0.0.1:5000", "lab", True)
    with pytest.raises(DistonetError, match="not an OCI repository prefix"):
        share_for("oci://registry.example.org/Lab")          # repository names are lower case
    assert media_type("disk.raw", "disk") == "application/vnd.distonet.disk.v1"
    assert media_type("SHA256SUMS", None) == "text/plain"
