"""The build host's apt facts: sources in every format, the archive state online and offline."""

import hashlib

import pytest

from distonet.errors import BuildError
from distonet.host.apt import archive_state, parse_sources, pick_mirror, pick_security_mirror


def test_parse_sources_one_line_with_bracket_options():
    one = ("deb http://a.invalid/debian bookworm main\n"
           "deb [arch=amd64 signed-by=/k.gpg] http://b.invalid/debian stable main\n"
           "deb-src http://c.invalid/debian bookworm main\n# deb http://d.invalid/ x\n")
    assert parse_sources(one, False) == [("http://a.invalid/debian", ["bookworm"]),
                                         ("http://b.invalid/debian", ["stable"])]
    only = parse_sources("deb [arch=amd64 signed-by=/k.gpg] http://u.invalid/debian bookworm main\n", False)
    assert pick_mirror(only, "bookworm") == "http://u.invalid/debian"


def test_parse_sources_deb822():
    d822 = ("Types: deb\nURIs: http://a.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
            "Types: deb\nURIs: http://a.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
            "Types: deb\nEnabled: no\nURIs: http://off.invalid/debian\nSuites: bookworm\n")
    entries = parse_sources(d822, True)
    assert len(entries) == 2
    assert pick_mirror(entries, "bookworm") == "http://a.invalid/debian"
    assert pick_security_mirror(entries) == "http://a.invalid/debian-security"
    assert pick_mirror([("http://x.invalid/other", ["nodistro"]), ("http://m.invalid/debian/", ["sid"])], "bookworm") == "http://m.invalid/debian"
    assert pick_mirror([("http://x.invalid/other", ["nodistro"])], "bookworm") is None


def test_deb822_sources_keys_in_any_case_values_on_several_lines_and_comments():
    text = ("# the host's archive\ntypes: deb deb-src\nuris: http://a.invalid/debian\n"
            "  http://b.invalid/debian\n# between fields\nSUITES: trixie\n    trixie-updates\n"
            "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n -----END PGP PUBLIC KEY BLOCK-----\n\n\n"
            "Types: deb-src\nURIs: http://src.invalid/debian\nSuites: trixie\n")
    assert parse_sources(text, True) == [("http://a.invalid/debian", ["trixie", "trixie-updates"]),
                                         ("http://b.invalid/debian", ["trixie", "trixie-updates"])]


def test_archive_state_covers_every_suite_and_uses_the_last_copy_offline(tmp_path):
    mirror = tmp_path / "mirror"
    for suite in ("trixie", "trixie-updates"):
        (mirror / "dists" / suite).mkdir(parents=True)
        (mirror / "dists" / suite / "InRelease").write_text(f"Suite: {suite}\nDate: 1\n")
    url = f"file://{mirror}"
    sources = [(url, "trixie"), (url, "trixie-updates")]
    first = archive_state(sources, tmp_path / "cache")
    assert first != archive_state(sources[:1], tmp_path / "cache")
    (mirror / "dists/trixie-updates/InRelease").write_text("Suite: trixie-updates\nDate: 2\n")
    second = archive_state(sources, tmp_path / "cache")
    assert second != first  # an update changes the keys
    (mirror / "dists/trixie/InRelease").unlink()  # "offline"
    assert archive_state(sources, tmp_path / "cache") == second
    with pytest.raises(BuildError, match="cannot read"):
        archive_state([(url, "sid")], tmp_path / "cache")


def test_the_same_archive_on_two_mirrors_has_one_state(tmp_path):
    for m in ("m1", "m2"):
        (tmp_path / m / "dists/trixie").mkdir(parents=True)
        (tmp_path / m / "dists/trixie/InRelease").write_text("signed content\n")
    a = archive_state([(f"file://{tmp_path}/m1", "trixie")], tmp_path / "cache")
    b = archive_state([(f"file://{tmp_path}/m2", "trixie")], tmp_path / "cache")
    assert a == b == hashlib.sha256(hashlib.sha256(b"signed content\n").digest()).hexdigest()
