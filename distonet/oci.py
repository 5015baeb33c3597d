"""Builds as OCI artifacts in a registry (the distribution registry, Harbor, zot, a cloud's), through
oras-py: one image manifest per build in the repository `<namespace>/<recipe>`, tagged with the
build id and then `latest`.

- Each file of the build is a layer: its blob digest is the sha256 the build's manifest records,
  its media type says what it is (`application/vnd.distonet.<kind>.v1`, the build manifest,
  SHA256SUMS, the GPG signature) and its annotations give its path in the build
  (`org.opencontainers.image.title`) and its format.
- The config blob is a small JSON document (recipe, build id, time); the manifest's
  annotations repeat them, with `org.opencontainers.image.created`.
- A publish uploads only the blobs the registry lacks (so a second run resumes), reads the
  manifest back and compares every layer's digest before it moves `latest`.
- `fetch` downloads a build's layers into a hidden folder, checks each digest, and renames the
  folder into place: a fetched build is whole or absent.

Specs: `oci://host[:port]/namespace` (HTTPS) or `oci+http://host:port/namespace` (plain HTTP,
for a registry on a trusted network or loopback). Credentials are the registry's usual ones
(`~/.docker/config.json`, as oras and docker write it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import faults, log
from .errors import BuildError, DistonetError
from .fsutil import fsync_dir, sha256_file
from .manifest import MANIFEST, SUMS, Manifest


@contextlib.contextmanager
def probing():
    """oras logs a registry's "manifest unknown" as an error before it raises: when we only ask
    whether a tag exists, that is an answer, not an error for the user's terminal."""
    oras_log = logging.getLogger("oras.logger")
    level = oras_log.level
    oras_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        oras_log.setLevel(level)

TITLE = "org.opencontainers.image.title"
CONFIG_TYPE = "application/vnd.distonet.build.config.v1+json"
ARTIFACT_TYPE = "application/vnd.distonet.build.v1"
MEDIA = {MANIFEST: "application/vnd.distonet.manifest.v1+json", SUMS: "text/plain", "report.html": "text/html",
         SUMS + ".asc": "application/pgp-signature"}


def media_type(rel: str, kind: str | None) -> str:
    return MEDIA.get(rel) or f"application/vnd.distonet.{kind or 'file'}.v1"


@dataclass
class OciShare:
    host: str
    namespace: str
    insecure: bool = False

    def __str__(self) -> str:
        return f"oci{'+http' if self.insecure else ''}://{self.host}/{self.namespace}"

    def client(self):
        import oras.client
        return oras.client.OrasClient(hostname=self.host, insecure=self.insecure)

    def ref(self, recipe: str, tag: str) -> str:
        return f"{self.host}/{self.namespace}/{recipe}:{tag}"

    def manifests(self, recipe: str) -> list[Manifest]:
        """The build `latest` names (a registry lists tags, not builds by date): the one to
        compare a new build with."""
        client = self.client()
        try:
            container = client.get_container(self.ref(recipe, "latest"))
            with probing():
                layers = client.get_manifest(container).get("layers", [])
        except Exception:  # oras raises its own kinds and requests' for a missing tag: no previous build
            return []
        layer = next((x for x in layers if (x.get("annotations") or {}).get(TITLE) == MANIFEST), None)
        if layer is None:
            return []
        with tempfile.TemporaryDirectory(prefix="distonet-oci-") as tmp:
            client.download_blob(container, layer["digest"], f"{tmp}/{MANIFEST}")
            try:
                return [Manifest.load(Path(tmp))]
            except BuildError:
                return []

    def publish(self, out_dir: Path, m: Manifest, *, keep: int = 5, sign_key: str | None = None,
                gnupg_home: str | None = None, runner=None, extras: dict[str, Path] | None = None):
        import oras.oci
        from .publish import Published, SIGNATURE, files_of, sign
        client = self.client()
        container = client.get_container(self.ref(m.recipe, m.build_id))
        result = Published(m.recipe, m.build_id, self.ref(m.recipe, m.build_id))
        kinds = {a.path: (a.kind, a.format, a.sha256) for a in m.artifacts}
        with tempfile.TemporaryDirectory(prefix="distonet-oci-") as tmp:
            files = [(rel, out_dir / rel) for rel in files_of(m)] + list((extras or {}).items())
            if sign_key:
                shutil.copyfile(out_dir / SUMS, Path(tmp) / SUMS)
                sign(Path(tmp), sign_key, gnupg_home=gnupg_home)
                files.append((SIGNATURE, Path(tmp) / SIGNATURE))
            layers = []
            for rel, path in files:
                kind, fmt, sha = kinds.get(rel, (None, None, None))
                layer = oras.oci.NewLayer(str(path), media_type=media_type(rel, kind))
                if sha and layer["digest"] != f"sha256:{sha}":
                    raise BuildError(f"{path}: changed since the build (its digest is not the manifest's)",
                                     hint="rebuild the recipe, then publish")
                layer["annotations"] = {TITLE: rel, **({"io.distonet.format": fmt} if fmt else {}),
                                        **({"io.distonet.kind": kind} if kind else {})}
                if client.blob_exists(layer, container):
                    result.kept += layer["size"]
                else:
                    client._check_200_response(client.upload_blob(str(path), container, layer))
                    result.copied += layer["size"]
                    faults.point(f"publish:{m.recipe}:copied")
                layers.append(layer)
            config = Path(tmp) / "config.json"
            config.write_text(json.dumps({"recipe": m.recipe, "build_id": m.build_id, "built_at": m.built_at},
                                         sort_keys=True))
            conf = oras.oci.NewLayer(str(config), media_type=CONFIG_TYPE)
            conf.pop("annotations", None)
            client._check_200_response(client.upload_blob(str(config), container, conf))
        manifest = oras.oci.NewManifest()
        manifest.update(config=conf, layers=layers, artifactType=ARTIFACT_TYPE,
                        annotations={"org.opencontainers.image.created": m.built_at,
                                     "io.distonet.recipe": m.recipe, "io.distonet.build-id": m.build_id})
        client._check_200_response(client.upload_manifest(manifest, container))
        back = client.get_manifest(container)
        if [layer["digest"] for layer in back.get("layers", [])] != [layer["digest"] for layer in layers]:
            raise BuildError(f"{container}: the registry's manifest is not the one pushed")
        latest = client.get_container(self.ref(m.recipe, "latest"))
        client._check_200_response(client.upload_manifest(back, latest))
        faults.point(f"publish:{m.recipe}:committed")
        return result


def fetch(share: OciShare, recipe: str, tag: str, dest_root: Path) -> Path:
    """A published build into `dest_root/<recipe>-<build-id>/`, every layer checked by digest."""
    client = share.client()
    container = client.get_container(share.ref(recipe, tag))
    manifest = client.get_manifest(container)
    build_id = (manifest.get("annotations") or {}).get("io.distonet.build-id") or tag
    if not re.match(r"^[A-Za-z0-9._-]+$", build_id):
        raise BuildError(f"{container}: a build id {build_id!r} distonet would not write")
    final = dest_root / f"{recipe}-{build_id}"
    if final.is_dir():
        log.info(f"fetch: {final} is already here")
        return final
    partial = dest_root / f".{recipe}-{build_id}.partial"
    partial.mkdir(parents=True, exist_ok=True)
    for layer in manifest.get("layers", []):
        rel = (layer.get("annotations") or {}).get(TITLE, "")
        if not rel or rel.startswith("/") or ".." in Path(rel).parts:
            raise BuildError(f"{container}: a layer names {rel!r}, not a path inside a build")
        out = partial / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        want = layer["digest"].split(":", 1)[1]
        if out.is_file() and sha256_file(out) == want:
            continue                                  # a fetch interrupted earlier got this one
        client.download_blob(container, layer["digest"], str(out))
        if sha256_file(out) != want:
            out.unlink()
            raise BuildError(f"{container}: {rel} does not match its digest", hint="fetch again")
    m = Manifest.load(partial)                       # the build's own manifest agrees with its files
    for art in m.artifacts:
        if sha256_file(partial / art.path) != art.sha256:
            raise BuildError(f"{container}: {art.path} does not match the build's manifest")
    os.rename(partial, final)
    fsync_dir(dest_root)
    return final


def share_from(spec: str) -> OciShare | None:
    match = re.match(r"^oci(\+http)?://([A-Za-z0-9.-]+(?::\d+)?)/([a-z0-9]+(?:[._/-][a-z0-9]+)*)/?$", spec)
    if spec.startswith("oci") and not match:
        raise DistonetError(f"share {spec!r}: not an OCI repository prefix",
                            hint="oci://registry.example.org/namespace or oci+http://127.0.0.1:5000/namespace "
                                 "(lower-case path)")
    return OciShare(match.group(2), match.group(3), bool(match.group(1))) if match else None
