"""Artifact records and the build manifest: the contract every later consumer reads."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Artifact:
    kind: str      # stable names: rootfs, disk, qcow2, kernel, initrd, ...
    path: str      # relative to the manifest
    size: int
    sha256: str

    @classmethod
    def of(cls, kind: str, file: Path, base: Path) -> "Artifact":
        return cls(kind, os.path.relpath(file, base), file.stat().st_size, sha256_file(file))


def sha256_file(path: Path, bufsize: int = 4 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(bufsize):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_manifest(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_manifest(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def artifacts_from(data: dict) -> list[Artifact]:
    return [Artifact(**a) for a in data["artifacts"]]


def artifact_dicts(artifacts: list[Artifact]) -> list[dict]:
    return [asdict(a) for a in artifacts]
