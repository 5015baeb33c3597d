"""A stage cache shared by several builders: a directory (an NFS mount) or an OCI registry.

A builder pulls a stage it lacks before building it, and pushes each stage it builds. Entries
are keyed exactly as the local store keys them (the stage key names content only: kind,
version, parent key, inputs with the archive state), so builders on different machines and
mirrors of one archive state meet on the same keys.

An entry is the stage's tree as a tar (GNU tar: numeric owners, modes, ACLs, every extended
attribute, device nodes, so an overlayfs upper layer keeps its whiteouts and opaque
directories), compressed with zstd, and the stage's stamp; the entry's record names the
tarball's sha256 and size.

- Directory: `<dir>/<key>.<digest>.tar.zst` then `<dir>/<key>.json` (the record naming it),
  the tarball renamed into place, the record created with link(2): the record is the commit
  point, so a reader sees a whole entry or none, and of two builders pushing one key at once
  the first record stands and the other builder removes its tarball. Each push first sweeps
  what killed pushes left (`DirCache.sweep`).
- OCI: the repository `<namespace>/stages`, tag = the key; the tarball is the one layer, the
  stamp the config blob.
A pulled tarball is checked against the record's digest before it is unpacked: a truncated or
tampered entry is refused (and the stage built instead).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from . import faults, log
from .errors import BuildError, DistonetError
from .fsutil import sha256_file, write_atomic
from .host.run import Runner, run

STAGE_MEDIA = "application/vnd.distonet.stage.v1.tar+zstd"
STAMP_MEDIA = "application/vnd.distonet.stage.stamp.v1+json"
TAR_FLAGS = ["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "--sparse"]


def pack(tree: Path, dest: Path, runner: Runner = run) -> None:
    runner(["tar", "--create", "--file", str(dest), "--use-compress-program=zstd -T0 -3", *TAR_FLAGS,
            "--directory", str(tree), "."])


def unpack(tarball: Path, tree: Path, runner: Runner = run) -> None:
    tree.mkdir(parents=True, exist_ok=True)
    runner(["tar", "--extract", "--file", str(tarball), "--use-compress-program=zstd -d", *TAR_FLAGS,
            "--same-permissions", "--same-owner", "--directory", str(tree)])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


class DirCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    def record(self, key: str) -> dict | None:
        try:
            return json.loads((self.root / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None

    def has(self, key: str) -> bool:
        return self.record(key) is not None

    def push(self, key: str, tree: Path, stamp: dict, runner: Runner = run, name: str = "",
             scratch: Path | None = None) -> int:
        """Two builders may push one key at once, each with its own tarball (their trees were
        built apart: the same content, other bytes). Each tarball is named by its digest; the
        record is created with link(2), which fails if it exists (also over NFS), so the first
        record wins, names its own tarball, and the other builder removes its own."""
        if self.has(key):
            return 0
        self.root.mkdir(parents=True, exist_ok=True)
        self.sweep()
        tmp = self.root / f".{key}.tar.zst.{self._me}.{os.getpid()}"
        rec_tmp = self.root / f".{key}.json.{self._me}.{os.getpid()}"
        final = None
        try:
            pack(tree, tmp, runner)
            digest = sha256_file(tmp)
            final = self.root / f"{key}.{digest[:16]}.tar.zst"
            record = {"key": key, "file": final.name, "sha256": digest, "size": tmp.stat().st_size, "stamp": stamp}
            os.replace(tmp, final)
            faults.point(f"cache:packed:{name}")
            write_atomic(rec_tmp, json.dumps(record, indent=2))
            try:
                os.link(rec_tmp, self.root / f"{key}.json")          # the commit point
            except FileExistsError:
                won = self.record(key) or {}
                if won.get("file") != final.name:
                    final.unlink(missing_ok=True)                   # another builder's entry stands
                return 0
        finally:
            tmp.unlink(missing_ok=True)
            rec_tmp.unlink(missing_ok=True)
        return record["size"]

    # A killed pusher leaves its temporary files, or a tarball no record names (killed between
    # its rename and the record's link). Builders on several hosts share the directory: a
    # temporary file of this host is litter once its process is gone; anything else once it is
    # older than any push takes.
    _me = re.sub(r"[^A-Za-z0-9-]", "-", os.uname().nodename) or "host"
    STALE = 24 * 3600

    def sweep(self, now: float | None = None) -> list[Path]:
        now = time.time() if now is None else now
        named = {str((self.record(p.name[:-5]) or {}).get("file")) for p in self.root.glob("*.json")}
        gone = []
        for path in self.root.iterdir() if self.root.is_dir() else []:
            temporary = re.fullmatch(r"\.[0-9a-f]+\.(tar\.zst|json)\.(.+)\.(\d+)", path.name)
            orphan = path.name.endswith(".tar.zst") and not path.name.startswith(".") and path.name not in named
            if not (temporary or orphan):
                continue
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                continue
            dead = temporary and temporary.group(2) == self._me and not _alive(int(temporary.group(3)))
            if dead or age > self.STALE:
                path.unlink(missing_ok=True)
                gone.append(path)
        return gone

    def pull(self, key: str, tree: Path, runner: Runner = run) -> tuple[dict, int]:
        record = self.record(key)
        if record is None:
            raise BuildError(f"{self.root}: no stage {key[:12]}")
        name = str(record.get("file") or f"{key}.tar.zst")
        if "/" in name or not name.startswith(key):
            raise BuildError(f"{self.root / key}.json: names {name!r}, not an entry of its own")
        tarball = self.root / name
        if not tarball.is_file() or tarball.stat().st_size != record["size"] or sha256_file(tarball) != record["sha256"]:
            raise BuildError(f"{tarball}: does not match its record (truncated or tampered)")
        unpack(tarball, tree, runner)
        return record["stamp"], record["size"]


@contextlib.contextmanager
def push_scratch(scratch: Path | None, key: str):
    """A directory for the tarball on its way to a registry, under the build's work directory:
    named by our pid, so the next push removes one whose pusher was killed (a temporary
    directory of /tmp would stay there)."""
    if scratch is None:
        with tempfile.TemporaryDirectory(prefix="distonet-stage-") as tmp:
            yield Path(tmp)
        return
    scratch.mkdir(parents=True, exist_ok=True)
    for old in scratch.glob("push-*"):
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    tmp = scratch / f"push-{key[:16]}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class OciCache:
    def __init__(self, share):
        self.share = share           # oci.OciShare: host, namespace, insecure

    def __str__(self) -> str:
        return f"{self.share}/stages"

    def _container(self, client, key: str):
        return client.get_container(self.share.ref("stages", key))

    def _manifest(self, key: str) -> dict | None:
        from .oci import probing
        client = self.share.client()
        try:
            with probing():
                return client.get_manifest(self._container(client, key))
        except Exception:            # oras raises a plain ValueError for an unknown tag
            return None

    def has(self, key: str) -> bool:
        return self._manifest(key) is not None

    def push(self, key: str, tree: Path, stamp: dict, runner: Runner = run, name: str = "",
             scratch: Path | None = None) -> int:
        """Blobs first, the manifest last: the tag is the commit, so a push killed before it
        leaves no entry (the registry collects the untagged blob)."""
        import oras.oci
        if self.has(key):
            return 0
        client = self.share.client()
        container = self._container(client, key)
        with push_scratch(scratch, key) as tmp:
            tarball, conf_file = tmp / "stage.tar.zst", tmp / "stamp.json"
            pack(tree, tarball, runner)
            conf_file.write_text(json.dumps(stamp, sort_keys=True))
            layer = oras.oci.NewLayer(str(tarball), media_type=STAGE_MEDIA)
            layer["annotations"] = {"io.distonet.stage-key": key}
            if not client.blob_exists(layer, container):
                client._check_200_response(client.upload_blob(str(tarball), container, layer))
            faults.point(f"cache:packed:{name}")
            conf = oras.oci.NewLayer(str(conf_file), media_type=STAMP_MEDIA)
            conf.pop("annotations", None)
            client._check_200_response(client.upload_blob(str(conf_file), container, conf))
        manifest = oras.oci.NewManifest()
        manifest.update(config=conf, layers=[layer], artifactType="application/vnd.distonet.stage.v1",
                        annotations={"io.distonet.stage-key": key, "io.distonet.stage": stamp.get("stage", "")})
        client._check_200_response(client.upload_manifest(manifest, container))
        return layer["size"]

    def pull(self, key: str, tree: Path, runner: Runner = run) -> tuple[dict, int]:
        client = self.share.client()
        container = self._container(client, key)
        manifest = client.get_manifest(container)
        (layer,) = [x for x in manifest["layers"] if x["mediaType"] == STAGE_MEDIA]
        with tempfile.TemporaryDirectory(prefix="distonet-stage-", dir=tree.parent) as tmp:
            tarball, conf_file = Path(tmp) / "stage.tar.zst", Path(tmp) / "stamp.json"
            client.download_blob(container, layer["digest"], str(tarball))
            if "sha256:" + sha256_file(tarball) != layer["digest"]:
                raise BuildError(f"{container}: the stage's blob does not match its digest (truncated or tampered)")
            client.download_blob(container, manifest["config"]["digest"], str(conf_file))
            if "sha256:" + sha256_file(conf_file) != manifest["config"]["digest"]:
                raise BuildError(f"{container}: the stage's stamp does not match its digest")
            unpack(tarball, tree, runner)
            return json.loads(conf_file.read_text()), layer["size"]


def cache_for(spec: str | None):
    """DISTONET_STAGE_CACHE (or cache= for doit): a directory, or oci[+http]://host/namespace."""
    if not spec:
        return None
    if spec.startswith("/"):
        return DirCache(Path(spec))
    from .oci import share_from
    share = share_from(spec)
    if share is None:
        raise DistonetError(f"stage cache {spec!r}: neither a directory nor an OCI registry",
                            hint="an absolute path (an NFS mount) or oci://registry.example.org/namespace")
    return OciCache(share)


def configured():
    return cache_for(os.environ.get("DISTONET_STAGE_CACHE"))


def try_pull(cache, key: str, partial: Path, name: str, runner: Runner = run) -> dict | None:
    """The stage from the shared cache into `partial/tree`, or None (absent, unreachable, or
    refused: the caller builds it)."""
    if cache is None:
        return None
    try:
        if not cache.has(key):
            return None
        import time
        with log.step(f"{name} [{key[:12]}] from {cache}") as timing:
            faults.point(f"cache:pull:{name}")
            stamp, size = cache.pull(key, partial / "tree", runner)
        return {**stamp, "pulled_from": str(cache), "pulled_bytes": size, "pulled_at": time.time(),
                "pulled_seconds": timing["seconds"]}
    except (BuildError, OSError, ValueError) as exc:
        log.info(f"stage cache: {name} not taken from {cache} ({exc}); building it")
        for child in partial.iterdir():
            from .store import remove_tree
            remove_tree(child)
        return None


def try_push(cache, key: str, tree: Path, stamp: dict, name: str, runner: Runner = run,
             scratch: Path | None = None) -> None:
    """Push a stage this builder made; a failure is said, never fatal (the build is done)."""
    if cache is None:
        return
    try:
        with log.step(f"push {name} [{key[:12]}] to {cache}"):
            faults.point(f"cache:push:{name}")
            size = cache.push(key, tree, {k: v for k, v in stamp.items() if not re.match(r"pulled_", k)}, runner,
                              name=name, scratch=scratch)
        if size:
            log.info(f"stage cache: pushed {name}, {size >> 20} MiB")
    except Exception as exc:    # the registry or share went away: the local build stands
        log.info(f"stage cache: could not push {name} to {cache} ({exc})")
