"""The build manifest: a versioned contract that publish, report, deploy and boot read.

`manifest.json` lists exactly the files beside it (with `SHA256SUMS` in sha256sum's format);
the pipeline writes both last and swaps the whole output directory in at once, so a manifest
never describes files that are not there.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterator

from . import log
from .errors import BuildError
from .fsutil import sha256_file, write_atomic

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"


@dataclass(frozen=True)
class Artifact:
    kind: str      # stable names: rootfs, disk, qcow2, kernel, initrd, ...
    path: str      # relative to the manifest (absolute only inside a build, in OutputContext.inputs)
    size: int
    sha256: str
    format: str | None = None         # raw, ext4, qcow2, bzImage, initramfs, ...
    virtual_size: int | None = None   # for images whose disk size differs from the file size
    version: str | None = None        # the kernel version, for kernel and initrd

    @classmethod
    def of(cls, kind: str, file: Path, base: Path, **extra) -> "Artifact":
        size = file.stat().st_size
        if _unhashed is not None:       # hashes_later(): the caller hashes it
            art = cls(kind, os.path.relpath(file, base), size, "", **extra)
            _unhashed.append((art, Path(file)))
            return art
        if size > 256 << 20:
            log.info(f"hashing {file.name} ({size >> 20} MiB)")
        return cls(kind, os.path.relpath(file, base), size, sha256_file(file), **extra)

    @classmethod
    def load(cls, data: dict) -> "Artifact":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def at(self, base: Path) -> "Artifact":
        """The same artifact with its path made absolute under `base`."""
        return Artifact(**{**asdict(self), "path": str(Path(base) / self.path)})


_unhashed: list[tuple[Artifact, Path]] | None = None


@contextlib.contextmanager
def hashes_later(later: bool = True) -> Iterator[list[tuple[Artifact, Path]]]:
    """Inside, Artifact.of leaves sha256 empty and notes (artifact, file) in the list yielded:
    the caller hashes them while the build goes on (see with_hashes). With `later` False, a no-op."""
    global _unhashed
    if not later:
        yield []
        return
    outer, _unhashed = _unhashed, []
    try:
        yield _unhashed
    finally:
        _unhashed = outer


def with_hashes(arts: list[Artifact], unhashed: list[tuple[Artifact, Path]]) -> list[Artifact]:
    """`arts` with the sha256 of each artifact hashes_later noted (the files read here)."""
    digests = {id(a): sha256_file(f) for a, f in unhashed}
    return [replace(a, sha256=digests[id(a)]) if id(a) in digests else a for a in arts]


@dataclass(frozen=True)
class BootRecord:
    artifact: str      # the artifact kind booted (disk, qcow2, ...)
    firmware: str
    reached: bool
    seconds: float
    accel: str
    at: str            # ISO 8601 UTC


@dataclass
class Manifest:
    recipe: str
    build_id: str
    built_at: str
    distonet_version: str
    resolved_recipe: dict          # secrets removed
    mirror: str
    archive_state: str
    root_uuid: str
    kernel_cmdline: list[str]
    stages: list[dict]             # {name, kind, key, seconds, built_at}
    outputs: list[dict]            # {name, key, seconds}
    packages: list[dict]           # {name, version, architecture, source, source_version, installed_kib}
    artifacts: list[Artifact]
    git_commit: str | None = None
    site: str | None = None
    overlay_files: list[dict] = field(default_factory=list)  # {overlay, path, kind, source, sha256, mode, …}
    boots: list[BootRecord] = field(default_factory=list)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        data = asdict(self)
        data = {"format_version": data.pop("format_version"), **data}
        return data

    @classmethod
    def from_dict(cls, data: dict, where: Path | str = "manifest") -> "Manifest":
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise BuildError(f"{where}: manifest format {version!r}, this distonet reads {FORMAT_VERSION}",
                             hint="rebuild the recipe with this distonet version")
        data = dict(data)
        data["artifacts"] = [Artifact.load(a) for a in data.get("artifacts", [])]
        data["boots"] = [BootRecord(**b) for b in data.get("boots", [])]
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise BuildError(f"{path}: no manifest", hint="build the recipe first (`distonet build NAME`)") from None
        except (OSError, ValueError) as exc:
            raise BuildError(f"{path}: unreadable manifest ({exc})") from None
        if not isinstance(data, dict):
            raise BuildError(f"{path}: not a manifest")
        return cls.from_dict(data, path)

    def save(self, directory: Path) -> Path:
        """Write SHA256SUMS, then manifest.json (the manifest is the commit point)."""
        write_atomic(directory / SUMS, sums_text(self.artifacts))
        path = directory / MANIFEST
        write_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def artifact(self, kind: str) -> Artifact:
        for art in self.artifacts:
            if art.kind == kind:
                return art
        raise BuildError(f"{self.recipe}: the build has no {kind} artifact",
                         hint=f"enable the output that makes it in recipes/{self.recipe}.yaml and rebuild")


def sums_text(artifacts: list[Artifact]) -> str:
    return "".join(f"{a.sha256}  {a.path}\n" for a in sorted(artifacts, key=lambda a: a.path))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
