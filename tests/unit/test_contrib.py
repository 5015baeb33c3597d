"""The CI templates and systemd units in contrib/ agree with the code: valid YAML, recipes that
exist, the nightly command as the CLI spells it, the lock's exit status counted as success."""

from pathlib import Path

import yaml

from distonet import PROJECT_ROOT, nightly
from distonet.cli import parser
from distonet.recipe import known_recipes

CONTRIB = Path(PROJECT_ROOT) / "contrib"


def test_the_ci_templates_run_nightly_over_shipped_recipes():
    shipped = set(known_recipes(PROJECT_ROOT / "recipes"))
    github = yaml.safe_load((CONTRIB / "ci/github-actions-nightly.yml").read_text())
    job = github["jobs"]["nightly"]
    assert set(job["strategy"]["matrix"]["recipe"]) <= shipped and job["strategy"]["fail-fast"] is False
    assert any("distonet nightly" in (step.get("run") or "") for step in job["steps"])
    assert "oci://" in job["env"]["DISTONET_STAGE_CACHE"]
    gitlab = yaml.safe_load((CONTRIB / "ci/gitlab-ci-nightly.yml").read_text())
    assert set(gitlab["nightly"]["parallel"]["matrix"][0]["RECIPE"]) <= shipped
    assert any("distonet nightly" in line for line in gitlab["nightly"]["script"])
    # the command line they use parses
    a = parser().parse_args(["nightly", "minimal", "--share", "/srv/builds"])
    assert a.recipes == ["minimal"] and a.share == "/srv/builds"


def test_the_systemd_units_run_nightly_and_accept_a_held_lock():
    service = (CONTRIB / "systemd/distonet-nightly.service").read_text()
    assert "ExecStart=/opt/distonet/.venv/bin/distonet nightly $RECIPES" in service
    assert f"SuccessExitStatus={nightly.EX_TEMPFAIL}" in service and "Type=oneshot" in service
    timer = (CONTRIB / "systemd/distonet-nightly.timer").read_text()
    assert "OnCalendar=" in timer and "Persistent=true" in timer and "WantedBy=timers.target" in timer
