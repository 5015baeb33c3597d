"""Publishing: a real build (minimal) to a file share through both front ends, `doit publish
recipe=minimal share=PATH` and `distonet publish minimal --share PATH`; and a build over rsync
and SSH to an sshd the test starts on 127.0.0.1 with a key it makes."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import distonet, doit

pytestmark = pytest.mark.integration


def test_publish_minimal_to_a_file_share(minimal_build, project_paths, tmp_path):
    out = project_paths.recipe_output("minimal")
    m = json.loads((out / "manifest.json").read_text())
    booted = bool(m["boots"]) and all(b["reached"] for b in m["boots"])
    share = tmp_path / "share"
    first = doit("publish", "recipe=minimal", f"share={share}", check=False)
    if not booted:                       # never boot-tested here: refused, said why, nothing on the share
        assert first.returncode != 0 and "boot" in first.stderr and not (share / "minimal").exists()
        distonet("publish", "minimal", "--share", str(share), "--force")
    else:
        assert first.returncode == 0, first.stderr[-2000:]
    top = share / "minimal"
    assert os.readlink(top / "latest") == m["build_id"]
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=top / "latest", check=True)
    assert json.loads((top / "latest/manifest.json").read_text())["build_id"] == m["build_id"]
    # the sparse disk stays sparse on the share
    disk = top / "latest/disk.raw"
    assert disk.stat().st_blocks * 512 < disk.stat().st_size
    again = distonet("publish", "minimal", "--share", str(share), "--force")
    assert "already there" in again.stderr + again.stdout


@pytest.fixture
def sshd(tmp_path):
    """An sshd on 127.0.0.1 that lets in one key the test makes; stopped after the test."""
    from distonet.boot.qemu import free_port
    d = tmp_path / "ssh"
    d.mkdir()
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nStrictModes no\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n")
    os.makedirs("/run/sshd", exist_ok=True)   # sshd's privilege separation directory
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
                            stderr=open(d / "sshd.log", "w"))
    options = ("-i", str(d / "client"), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
               "-o", f"UserKnownHostsFile={d / 'known_hosts'}")
    import time
    for _ in range(50):
        if subprocess.run(["ssh", "-p", str(port), *options, "root@127.0.0.1", "true"],
                          capture_output=True).returncode == 0:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"sshd did not start: {(d / 'sshd.log').read_text()[-1000:]}")
    try:
        yield port, options
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def small_build(out):
    """A build of a few files, one of them a sparse 64 MiB image (the transport is what is tested)."""
    import hashlib
    from tests.unit.test_publish import build
    build(out, "b1", "2026-11-01T00:00:00")
    with open(out / "disk.raw", "wb") as fh:
        fh.truncate(64 << 20)
        fh.seek(1 << 20)
        fh.write(b"boot")
    from distonet.manifest import Artifact, Manifest
    m = Manifest.load(out)
    m.artifacts.append(Artifact("disk", "disk.raw", 64 << 20, hashlib.sha256((out / "disk.raw").read_bytes()).hexdigest()))
    m.save(out)
    return out


def test_publish_over_rsync_and_ssh(tmp_path, sshd):
    from distonet.publish import publish
    port, options = sshd
    out = small_build(tmp_path / "build")
    m = json.loads((out / "manifest.json").read_text())
    share = tmp_path / "remote"
    spec = f"ssh://root@127.0.0.1:{port}{share}"

    def crash_after_the_copy(argv, **kw):
        from distonet.host.run import run
        if argv[0] == "ssh" and "distonet-publish" in argv:
            raise KeyboardInterrupt      # the copy arrived, the build was never finished
        return run(argv, **kw)
    with pytest.raises(KeyboardInterrupt):
        publish(out, spec, force=True, ssh_options=options, runner=crash_after_the_copy)
    top = share / "node"
    assert (top / f".partial-{m['build_id']}").is_dir() and not (top / "latest").exists()
    assert not (top / m["build_id"]).exists()                  # nothing shows as a build
    r = publish(out, spec, ssh_options=options)
    assert not r.already and os.readlink(top / "latest") == m["build_id"]
    assert 0 < r.copied < 8 << 20                              # resumed, and sparse on the wire
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=top / "latest", check=True)
    disk = top / "latest/disk.raw"
    assert disk.stat().st_blocks * 512 < disk.stat().st_size   # --sparse
    assert publish(out, spec, ssh_options=options).already
    # a copy the share corrupts is refused and never becomes latest
    subprocess.run(["rm", "-rf", str(top)], check=True)

    def corrupting(argv, **kw):
        from distonet.host.run import run
        result = run(argv, **kw)
        if argv[0] == "rsync":
            with open(top / f".partial-{m['build_id']}/rootfs.img", "r+b") as fh:
                fh.seek(4096)
                fh.write(b"corrupt")
        return result
    from distonet.errors import CommandError
    with pytest.raises(CommandError):
        publish(out, spec, force=True, ssh_options=options, runner=corrupting)
    assert not (top / "latest").exists() and not (top / m["build_id"]).exists()


@pytest.fixture
def registry(tmp_path):
    """Debian's docker-registry (the distribution registry) on 127.0.0.1, storage in tmp_path."""
    import time
    import urllib.request
    from distonet.boot.qemu import free_port
    port = free_port()
    d = tmp_path / "registry"
    d.mkdir()
    (d / "config.yml").write_text(
        f"version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {d / 'data'}}}\n"
        f"  delete: {{enabled: true}}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(d / "config.yml")],
                            stdout=subprocess.DEVNULL, stderr=open(d / "log", "w"))
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"the registry did not start: {(d / 'log').read_text()[-1000:]}")
    try:
        yield port, d / "data"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_publish_to_and_fetch_from_an_oci_registry(tmp_path, registry):
    from distonet.errors import BuildError
    from distonet.oci import fetch, share_from
    from distonet.publish import publish
    port, storage = registry
    out = small_build(tmp_path / "build")
    m = json.loads((out / "manifest.json").read_text())
    spec = f"oci+http://127.0.0.1:{port}/lab/builds"
    first = publish(out, spec)
    assert first.copied > 64 << 20 and first.kept == 0
    again = publish(out, spec)                        # every blob is there already
    assert again.copied == 0 and again.kept == first.copied
    share = share_from(spec)
    manifest = share.client().get_manifest(share.client().get_container(share.ref("node", "latest")))
    assert manifest["artifactType"] == "application/vnd.distonet.build.v1"
    assert manifest["annotations"]["io.distonet.build-id"] == m["build_id"]
    titles = {layer["annotations"]["org.opencontainers.image.title"]: layer for layer in manifest["layers"]}
    assert set(titles) == {a["path"] for a in m["artifacts"]} | {"SHA256SUMS", "manifest.json", "report.html"}
    assert titles["report.html"]["mediaType"] == "text/html"        # the build report (buildreport.py)
    for art in m["artifacts"]:                        # the registry's digests are the build's own
        assert titles[art["path"]]["digest"] == f"sha256:{art['sha256']}"
    assert titles["pxe/boot.ipxe"]["mediaType"] == "application/vnd.distonet.ipxe.v1"
    said = distonet("fetch", "node", "--share", spec, "--to", str(tmp_path / "fetched"))
    got = Path(said.stdout.strip())                   # the CLI says where the build went
    assert got.name == f"node-{m['build_id']}"
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=got, check=True)
    assert (got / "pxe/boot.ipxe").read_bytes() == (out / "pxe/boot.ipxe").read_bytes()
    # a blob the registry's storage corrupted is refused; nothing appears
    blob = titles["rootfs.img"]["digest"].split(":")[1]
    data = storage / "docker/registry/v2/blobs/sha256" / blob[:2] / blob / "data"
    data.write_bytes(b"tampered" + data.read_bytes()[8:])
    with pytest.raises(BuildError, match="does not match"):
        fetch(share, "node", m["build_id"], tmp_path / "again")
    assert not (tmp_path / "again" / f"node-{m['build_id']}").exists()


def test_a_fresh_store_builds_minimal_from_the_registry_alone(minimal_build, tmp_path, registry, monkeypatch):
    """A second machine's view: a store with nothing in it, the registry as the shared stage
    cache. Every stage is pulled (checked by digest) and none runs; the outputs are made."""
    from tests.integration.conftest import summary_states
    port, _ = registry
    cache = f"oci+http://127.0.0.1:{port}/lab"
    pushed = distonet("push-stages", "minimal", "--cache", cache)
    assert "pushed bootstrap" in pushed.stderr
    here = json.loads((minimal_build_output() / "manifest.json").read_text())
    monkeypatch.setenv("DISTONET_CACHE", str(tmp_path / "fresh-cache"))
    monkeypatch.setenv("DISTONET_OUTPUT", str(tmp_path / "fresh-output"))
    fresh = doit("build", "recipe=minimal", f"cache={cache}")
    states = summary_states(fresh.stderr)
    stages = {k: v for k, v in states.items() if not k.startswith("output")}
    assert stages and set(stages.values()) == {"pulled"}, fresh.stderr[-3000:]
    assert all(v == "run" for k, v in states.items() if k.startswith("output"))
    built = json.loads((tmp_path / "fresh-output/minimal/manifest.json").read_text())
    assert built["root_uuid"] == here["root_uuid"] and built["packages"] == here["packages"]
    assert not (tmp_path / "fresh-cache/apt-archives").exists() or not any((tmp_path / "fresh-cache/apt-archives").iterdir())


def minimal_build_output():
    from distonet.paths import Paths
    return Paths.default().recipe_output("minimal")
