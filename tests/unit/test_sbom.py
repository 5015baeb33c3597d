"""The SPDX document: packages from the tree's dpkg database, licences from DEP-5 copyright
files (mapped to SPDX ids, unknown ones as LicenseRefs), purls; validated by spdx-tools."""

import dataclasses
import json

from distonet.host.run import run
from distonet.outputs.sbom import Sbom, expression
from tests.helpers import plan_of, write
from tests.unit.test_outputs import ctx_for

STATUS = """Package: tree
Status: install ok installed
Architecture: amd64
Version: 2.2.1-1
Installed-Size: 110
Description: tree

Package: libfoo1
Status: install ok installed
Architecture: amd64
Source: foo (1.0-2)
Version: 1.0-2+b1
Installed-Size: 20
Description: foo

Package: removed-one
Status: deinstall ok config-files
Architecture: amd64
Version: 1
Description: gone
"""

DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: tree

Files: *
Copyright: 1996 Someone
License: GPL-2+

Files: debian/*
Copyright: 2020 Other
License: Expat or SomethingOdd
"""


def fake_tree(tmp_path):
    tree = tmp_path / "tree"
    (tree / "var/lib/dpkg").mkdir(parents=True)
    (tree / "var/lib/dpkg/status").write_text(STATUS)
    (tree / "usr/share/doc/tree").mkdir(parents=True)
    (tree / "usr/share/doc/tree/copyright").write_text(DEP5)
    (tree / "usr/share/doc/libfoo1").mkdir(parents=True)
    (tree / "usr/share/doc/libfoo1/copyright").write_text("Not machine readable at all.\n")
    return tree


def test_sbom_lists_packages_licences_and_purls_and_validates(paths, tmp_path):
    write(paths.recipes, "s", "extends: minimal\noutputs: {sbom: {}}\n")
    plan = plan_of("s", paths)
    ctx = ctx_for(plan, "sbom", tmp_path, run, tree=fake_tree(tmp_path))
    (art,) = Sbom.make(ctx)
    assert art.kind == "sbom" and art.path == "sbom.spdx.json"
    doc = json.loads((tmp_path / "out/sbom.spdx.json").read_text())
    assert doc["spdxVersion"] == "SPDX-2.3" and doc["name"] == "distonet image s"
    pkgs = {p["name"]: p for p in doc["packages"]}
    assert set(pkgs) == {"s", "tree", "libfoo1"}  # not the removed one
    tree = pkgs["tree"]
    assert tree["versionInfo"] == "2.2.1-1"
    assert tree["licenseDeclared"] == "GPL-2.0-or-later AND (MIT OR LicenseRef-SomethingOdd)"
    assert tree["externalRefs"][0]["referenceLocator"] == "pkg:deb/debian/tree@2.2.1-1?arch=amd64&distro=debian-trixie"
    assert pkgs["libfoo1"]["licenseDeclared"] == "NOASSERTION"  # not a DEP-5 file
    assert "Debian source package foo 1.0-2" == pkgs["libfoo1"]["sourceInfo"]
    assert {e["licenseId"] for e in doc["hasExtractedLicensingInfos"]} == {"LicenseRef-SomethingOdd"}
    assert sum(r["relationshipType"] == "CONTAINS" for r in doc["relationships"]) == 2


def test_expressions_map_debian_short_names():
    extracted = {}
    assert str(expression(["GPL-3+ with OpenSSL exception"], extracted)) == "GPL-3.0-or-later"
    assert str(expression(["BSD-3-clause", "public-domain"], extracted)) == "BSD-3-Clause AND LicenseRef-public-domain"
    assert extracted == {"LicenseRef-public-domain": "public-domain"}


def test_licences_are_read_once_per_copyright_content(tmp_path, monkeypatch):
    """The memo is keyed on the file's bytes: a second build reads nothing again, a changed file
    is read again, and a memo of another version is ignored."""
    from distonet.outputs import sbom
    tree = fake_tree(tmp_path)
    parsed = []
    real = sbom._parse_licences
    monkeypatch.setattr(sbom, "_parse_licences", lambda data: parsed.append(data) or real(data))
    path = tmp_path / "cache/sbom/licences.json"
    first = sbom.LicenceMemo(path)
    assert sbom.licences(tree, "tree", first) == ["GPL-2+", "Expat or SomethingOdd"]
    assert sbom.licences(tree, "libfoo1", first) == [] and sbom.licences(tree, "absent", first) == []
    first.save()
    assert len(parsed) == 2
    again = sbom.LicenceMemo(path)
    assert sbom.licences(tree, "tree", again) == ["GPL-2+", "Expat or SomethingOdd"] and len(parsed) == 2
    (tree / "usr/share/doc/tree/copyright").write_text(DEP5.replace("GPL-2+", "GPL-3+"))
    assert sbom.licences(tree, "tree", again)[0] == "GPL-3+" and len(parsed) == 3
    path.write_text(json.dumps({"version": 0, "licences": {}}))
    assert sbom.LicenceMemo(path).known == {}


def counted_documents(paths, tmp_path, monkeypatch):
    """An SBOM recipe's plan, a tree, and a list that grows by one each time a document is made."""
    from distonet.outputs import sbom
    write(paths.recipes, "s", "extends: minimal\noutputs: {sbom: {}}\n")
    made = []
    real = sbom.make_document
    monkeypatch.setattr(sbom, "make_document", lambda *a, **kw: made.append(1) or real(*a, **kw))
    return plan_of("s", paths), fake_tree(tmp_path), made


def test_a_build_that_changed_no_package_takes_the_document_made_before(paths, tmp_path, monkeypatch):
    """The document is a function of the package list, the licences and the build's names and
    epoch: the same again is copied, not made; a changed licence makes it again."""
    plan, tree, made = counted_documents(paths, tmp_path, monkeypatch)
    docs = []
    for n in range(3):
        if n == 2:
            (tree / "usr/share/doc/tree/copyright").write_text(DEP5.replace("GPL-2+", "GPL-3+"))
        (tmp_path / str(n)).mkdir()
        ctx = dataclasses.replace(ctx_for(plan, "sbom", tmp_path / str(n), run, tree=tree), cache=tmp_path / "cache")
        Sbom.make(ctx)
        docs.append((tmp_path / str(n) / "out/sbom.spdx.json").read_text())
    assert len(made) == 2 and docs[0] == docs[1] and docs[2] != docs[0]
    assert "GPL-3.0-or-later" in docs[2]


def test_an_overlay_edit_takes_the_document_made_before_with_its_own_image_id(paths, tmp_path, monkeypatch):
    """Every overlay edit changes the root UUID (it comes from the seal's key): the kept
    document is taken all the same, and it is the very document a fresh one would be."""
    plan, tree, made = counted_documents(paths, tmp_path, monkeypatch)
    docs = {}
    for n, (uuid, cache) in enumerate([("11111111-2222-5333-8444-555555555555", "cache"),
                                       ("66666666-7777-5888-9999-000000000000", "cache"),
                                       ("66666666-7777-5888-9999-000000000000", "fresh")]):
        (tmp_path / str(n)).mkdir()
        ctx = ctx_for(plan, "sbom", tmp_path / str(n), run, tree=tree)
        # a build's epoch, as every real plan has (the archive's date): without one the document
        # is dated now, and a fresh one made a second later would differ by its date alone
        ctx = dataclasses.replace(ctx, cache=tmp_path / cache,
                                  build=dataclasses.replace(ctx.build, root_uuid=uuid, epoch=1764460800))
        Sbom.make(ctx)
        docs[n] = (tmp_path / str(n) / "out/sbom.spdx.json").read_text()
    assert len(made) == 2                      # the first and the one in a fresh cache
    assert docs[1] == docs[2] and "66666666-7777-5888-9999-000000000000" in docs[1]
    assert "11111111-2222-5333-8444-555555555555" not in docs[1]
