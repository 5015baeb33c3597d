"""sbom.spdx.json: an SPDX 2.3 document of the image's packages — versions, source packages,
purls, and the licences Debian's machine-readable copyright files declare — made and validated
with spdx-tools (the SPDX project's Python library)."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import re
from pathlib import Path

from .. import __version__
from ..digest import digest
from ..errors import BuildError
from ..fsutil import atomic_path, write_atomic
from ..manifest import Artifact
from ..tree import package_list
from .base import Output, OutputContext

# Debian copyright short names → SPDX identifiers (DEP-5 §"Short name" and the SPDX list).
DEBIAN_TO_SPDX = {
    "gpl-1": "GPL-1.0-only", "gpl-1+": "GPL-1.0-or-later", "gpl-2": "GPL-2.0-only", "gpl-2+": "GPL-2.0-or-later",
    "gpl-3": "GPL-3.0-only", "gpl-3+": "GPL-3.0-or-later", "lgpl-2": "LGPL-2.0-only", "lgpl-2+": "LGPL-2.0-or-later",
    "lgpl-2.1": "LGPL-2.1-only", "lgpl-2.1+": "LGPL-2.1-or-later", "lgpl-3": "LGPL-3.0-only",
    "lgpl-3+": "LGPL-3.0-or-later", "agpl-3": "AGPL-3.0-only", "agpl-3+": "AGPL-3.0-or-later",
    "gfdl-1.2": "GFDL-1.2-only", "gfdl-1.2+": "GFDL-1.2-or-later", "gfdl-1.3": "GFDL-1.3-only",
    "gfdl-1.3+": "GFDL-1.3-or-later", "artistic": "Artistic-1.0-Perl", "artistic-2.0": "Artistic-2.0",
    "bsd-2-clause": "BSD-2-Clause", "bsd-3-clause": "BSD-3-Clause", "bsd-4-clause": "BSD-4-Clause",
    "expat": "MIT", "mit": "MIT", "isc": "ISC", "zlib": "Zlib", "apache-2.0": "Apache-2.0",
    "mpl-1.1": "MPL-1.1", "mpl-2.0": "MPL-2.0", "psf-2": "PSF-2.0", "cc0-1.0": "CC0-1.0", "curl": "curl",
    "openssl": "OpenSSL", "x11": "X11", "bsl-1.0": "BSL-1.0", "ofl-1.1": "OFL-1.1", "unicode": "Unicode-DFS-2016",
}


class Sbom(Output):
    name = "sbom"
    reads = ("distribution",)
    needs_tree = True
    tools = ("dpkg-query",)

    @classmethod
    def files(cls, options) -> list[str]:
        return ["sbom.spdx.json"]

    @classmethod
    def make(cls, ctx: OutputContext) -> list[Artifact]:
        memo = LicenceMemo(ctx.cache / "sbom" / "licences.json" if ctx.cache else None)
        packages = package_list(ctx.tree, ctx.runner)
        suite = ctx.reads["distribution"].suite
        final = ctx.out / "sbom.spdx.json"
        # The document is a function of these alone: a build that changed no package (an overlay
        # edited, a hook) takes the one made before instead of a second of spdx-tools. The
        # image's id (the root file system's UUID, which every overlay edit changes: it comes
        # from the seal's key) is kept out of the key and written into the kept document's
        # copy: it appears only in the document's namespace, which no other text can match.
        declared = {p["name"]: licences(ctx.tree, p["name"], memo) for p in packages}
        made = ctx.cache / "sbom" / "documents" / (digest({
            "distonet": __version__, "spdx-tools": _spdx_tools_version(), "recipe": ctx.build.recipe,
            "suite": suite, "epoch": ctx.build.epoch, "packages": packages,
            "licences": declared})[:32] + ".json") if ctx.cache else None
        if made is not None and made.is_file():
            with contextlib.suppress(OSError, ValueError, KeyError):
                kept = json.loads(made.read_text())
                with atomic_path(final) as tmp:
                    tmp.write_text(kept["document"].replace(kept["image"], ctx.build.root_uuid))
                memo.save()
                return [Artifact.of("sbom", final, ctx.out, format="spdx-2.3+json")]
        document = make_document(ctx.tree, packages, ctx.build.recipe, suite, ctx.build.root_uuid, memo,
                                 ctx.build.epoch, declared)
        memo.save()
        from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
        from spdx_tools.spdx.writer.json.json_writer import write_document_to_file
        problems = validate_full_spdx_document(document)
        if problems:
            raise BuildError(f"SPDX document does not validate: {problems[0].validation_message}"
                             + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        with atomic_path(final) as tmp:
            write_document_to_file(document, str(tmp), validate=False)
        if made is not None:
            with contextlib.suppress(OSError):           # only a speed-up lost
                made.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(made, json.dumps({"image": ctx.build.root_uuid, "document": final.read_text()}))
        return [Artifact.of("sbom", final, ctx.out, format="spdx-2.3+json")]


def _spdx_tools_version() -> str:
    from importlib.metadata import version
    return version("spdx-tools")


def purl(pkg: dict, suite: str) -> str:
    from urllib.parse import quote
    return (f"pkg:deb/debian/{quote(pkg['name'])}@{quote(pkg['version'], safe='')}"
            f"?arch={pkg['architecture']}&distro=debian-{suite}")


def spdx_id(name: str) -> str:
    return "SPDXRef-Package-" + re.sub(r"[^A-Za-z0-9.-]", "-", name)


class LicenceMemo:
    """Licence names by the sha256 of the copyright file they were read from: python-debian's
    DEP-5 parser takes most of a second for a small image's files, and they rarely change
    between builds. Content-keyed, so any builder's entry is right; written whole (last wins)."""
    VERSION = 1

    def __init__(self, path: Path | None):
        self.path, self.known, self.added = path, {}, False
        try:
            data = json.loads(path.read_text()) if path else {}
            if data.get("version") == self.VERSION:
                self.known = dict(data["licences"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass

    def get(self, data: bytes, parse) -> list[str]:
        key = hashlib.sha256(data).hexdigest()
        if key not in self.known:
            self.known[key], self.added = parse(data), True
        return list(self.known[key])

    def save(self) -> None:
        if self.path and self.added:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(self.path, json.dumps({"version": self.VERSION, "licences": self.known}))
            except OSError:
                pass  # only a speed-up lost


def licences(tree: Path, package: str, memo: LicenceMemo | None = None) -> list[str]:
    """Licence short names from the package's DEP-5 copyright file ([] if it has none)."""
    path = tree / "usr/share/doc" / package / "copyright"
    try:
        data = path.read_bytes()
    except OSError:
        return []
    return (memo or LicenceMemo(None)).get(data, _parse_licences)


def _parse_licences(data: bytes) -> list[str]:
    import io
    import logging
    from debian.copyright import Copyright, NotMachineReadableError
    # Its warnings about old Format URLs are about the package, not the build: not on the console.
    logging.getLogger("debian.copyright").setLevel(logging.ERROR)
    try:
        c = Copyright(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace"), strict=False)
    except (NotMachineReadableError, ValueError, AttributeError):
        return []
    names = []
    for para in c.all_files_paragraphs():
        if para.license is not None and para.license.synopsis:
            names.append(para.license.synopsis.strip())
    return list(dict.fromkeys(names))


def expression(synopses: list[str], extracted: dict[str, str]):
    """One SPDX expression (parts joined by AND) for a package's licence synopses; unknown names
    become LicenseRef- ids, recorded in `extracted` for the document."""
    from spdx_tools.common.spdx_licensing import spdx_licensing
    from spdx_tools.spdx.model import SpdxNoAssertion
    parts = []
    for synopsis in synopses:
        words = re.split(r"\s+(or|and)\s+", synopsis.replace(",", " ").strip(), flags=re.IGNORECASE)
        out = []
        for w in words:
            if w.lower() in ("or", "and"):
                out.append(w.upper())
                continue
            token = w.strip().split(" with ")[0].strip()
            spdx = DEBIAN_TO_SPDX.get(token.lower())
            if spdx is None:
                ref = "LicenseRef-" + (re.sub(r"[^A-Za-z0-9.-]", "-", token).strip("-") or "unknown")
                extracted[ref] = token
                spdx = ref
            out.append(spdx)
        if out:
            parts.append("(" + " ".join(out) + ")" if len(out) > 1 else out[0])
    if not parts:
        return SpdxNoAssertion()
    try:
        return spdx_licensing.parse(" AND ".join(dict.fromkeys(parts)))
    except Exception:  # license-expression raises its own several kinds; the value is then unknown
        return SpdxNoAssertion()


def make_document(tree: Path, packages: list[dict], recipe: str, suite: str, image_id: str,
                  memo: LicenceMemo | None = None, epoch: int = 0, declared: dict | None = None):
    from spdx_tools.spdx.model import (Actor, ActorType, CreationInfo, Document, ExternalPackageRef,
                                       ExternalPackageRefCategory, ExtractedLicensingInfo, Package,
                                       PackagePurpose, Relationship, RelationshipType, SpdxNoAssertion)
    # the build's epoch (the archive state's date), so that a rebuild writes the same document
    created = (datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc) if epoch else
               datetime.datetime.now(datetime.timezone.utc)).replace(microsecond=0, tzinfo=None)
    info = CreationInfo("SPDX-2.3", "SPDXRef-DOCUMENT", f"distonet image {recipe}",
                        f"https://distonet.invalid/spdx/{recipe}/{image_id}",
                        [Actor(ActorType.TOOL, f"distonet-{__version__}")], created)
    image = Package("SPDXRef-Image", recipe, SpdxNoAssertion(), files_analyzed=False,
                    primary_package_purpose=PackagePurpose.OPERATING_SYSTEM,
                    license_concluded=SpdxNoAssertion(), license_declared=SpdxNoAssertion(),
                    copyright_text=SpdxNoAssertion())
    extracted: dict[str, str] = {}
    pkgs = [image]
    rels = [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, "SPDXRef-Image")]
    for p in packages:
        pk = Package(spdx_id(p["name"]), p["name"], SpdxNoAssertion(), version=p["version"],
                     files_analyzed=False, supplier=SpdxNoAssertion(),
                     source_info=f"Debian source package {p.get('source') or p['name']} "
                                 f"{p.get('source_version') or p['version']}",
                     license_concluded=SpdxNoAssertion(),
                     license_declared=expression(declared[p["name"]] if declared else licences(tree, p["name"], memo),
                                                  extracted),
                     copyright_text=SpdxNoAssertion(),
                     external_references=[ExternalPackageRef(ExternalPackageRefCategory.PACKAGE_MANAGER,
                                                             "purl", purl(p, suite))])
        pkgs.append(pk)
        rels.append(Relationship("SPDXRef-Image", RelationshipType.CONTAINS, pk.spdx_id))
    refs = [ExtractedLicensingInfo(license_id=ref, extracted_text=f"Debian copyright short name: {name}",
                                   license_name=name) for ref, name in sorted(extracted.items())]
    return Document(info, packages=pkgs, relationships=rels, extracted_licensing_info=refs)
