"""The `distonet` command: every verb has --help, errors are one line with an exit code."""

import json
import subprocess
import sys

import pytest

from distonet import PROJECT_ROOT, __version__, cli
from tests.helpers import write

VERBS = ["build", "boot", "list", "show", "check", "clean", "prune", "deploy-lvm", "elements", "schema"]


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A site's own recipe directory, searched before the shipped recipes."""
    d = tmp_path / "site-recipes"
    d.mkdir()
    monkeypatch.setenv("DISTONET_RECIPES", str(d))
    monkeypatch.setenv("DISTONET_OUTPUT", str(tmp_path / "output"))
    monkeypatch.setenv("DISTONET_CACHE", str(tmp_path / "cache"))
    return d


def test_version_and_help_on_every_verb():
    out = subprocess.run([sys.executable, "-m", "distonet", "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == f"distonet {__version__}"
    for verb in VERBS:
        proc = subprocess.run([sys.executable, "-m", "distonet", verb, "--help"], cwd=PROJECT_ROOT,
                              capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stdout.startswith(f"usage: distonet {verb}"), verb


def test_list_shows_site_recipes_extending_shipped_ones(site, capsys):
    write(site, "lab-node", "extends: minimal\ndescription: a lab node\nhostname: null\n")
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    lines = {l.split()[0]: l for l in out.splitlines()[1:]}
    assert "minimal" in lines and "not built" in lines["minimal"]
    assert lines["lab-node"].split()[1] == "minimal" and "a lab node" in lines["lab-node"]


def test_show_prints_the_resolved_recipe_without_secrets(site, capsys):
    hash_ = "$6$saltsalt$" + "a" * 86
    write(site, "opened", f"extends: minimal\naccess: {{root_password_hash: '{hash_}'}}\n")
    assert cli.main(["show", "opened", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["extends"] == ["minimal"] and data["packages"]["ssh"] == ["openssh-server"]
    assert data["access"]["root_password_hash"] == "<redacted>"
    assert cli.main(["show", "recipes/minimal.yaml"]) == 0  # a path names the recipe too
    assert "suite: trixie" in capsys.readouterr().out


def test_check_reports_every_bad_recipe_and_fails_at_the_end(site, capsys):
    write(site, "a-bad", "extends: minimal\nhostnme: x\n")
    write(site, "b-bad", "extends: minimal\npackages: {tools: [-oX]}\n")
    write(site, "c-good", "extends: minimal\n")
    (site / "d-yml.yml").write_text("extends: minimal\n")
    assert cli.main(["check"]) == 2
    err = capsys.readouterr().err
    assert "a-bad.yaml: hostnme: unknown key; did you mean 'hostname'?" in err
    assert "b-bad.yaml: packages.tools.0: '-oX' is not a Debian package name" in err
    assert "c-good: ok" in err and "d-yml: ok" in err and "minimal: ok" in err
    assert "check: 2 recipe(s) with errors" in err
    assert "Traceback" not in err


def test_verbs_that_act_need_root(site, monkeypatch, capsys):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert cli.main(["build", "minimal"]) == 1
    assert "distonet builds, boots and cleans as root" in capsys.readouterr().err


def test_unknown_recipe_is_one_line(site, capsys):
    assert cli.main(["show", "minmal"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("distonet: error: ") and "did you mean 'minimal'" in err and "\n" not in err


def test_doit_list_works_with_the_mirror_unreachable(site):
    import os
    write(site, "far", "extends: minimal\ndistribution: {mirror: 'http://127.0.0.1:9/debian', "
                       "security_mirror: 'http://127.0.0.1:9/debian-security'}\n")
    env = dict(os.environ, DISTONET_DOIT_DB=str(site / "doit.db"))
    proc = subprocess.run([sys.executable, "-m", "doit", "list", "--all", "recipe=far"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "bootstrap:far" in proc.stdout and "build:far" in proc.stdout
    build = subprocess.run([sys.executable, "-m", "doit", "info", "build:far", "recipe=far"], cwd=PROJECT_ROOT,
                           capture_output=True, text=True, env=env, timeout=120)
    assert "manifest:far" in build.stdout, build.stderr  # (doit info exits 1: the task would run)


def test_unknown_element_is_one_line_and_elements_lists_them(site, capsys):
    write(site, "el", "extends: minimal\ndib: {elements: [devuser, dhcp-all-interface]}\n")
    assert cli.main(["check", "el"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("distonet: error: el: dib.elements: no element 'dhcp-all-interface' "
                             "(did you mean 'dhcp-all-interfaces'?)") and len(err) == 2  # + the count
    assert cli.main(["elements"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert {"devuser", "dhcp-all-interfaces", "distonet-os"} <= listed
