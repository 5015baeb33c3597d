import os
import shutil
from pathlib import Path

import pytest

from distonet import PROJECT_ROOT
from distonet.paths import Paths

RECIPES = PROJECT_ROOT / "recipes"


@pytest.fixture
def recipes(tmp_path) -> Path:
    """A recipes dir holding a copy of the shipped recipes; tests add their own files to it."""
    d = tmp_path / "recipes"
    shutil.copytree(RECIPES, d)
    return d


@pytest.fixture
def paths(tmp_path, recipes) -> Paths:
    return Paths(recipes=recipes, cache=tmp_path / "cache", output=tmp_path / "output")


def pytest_collection_modifyitems(config, items):
    # The nightly job's scenarios run only when asked for (-m nightly, or -m naming them).
    if "nightly" not in (config.option.markexpr or ""):
        later = pytest.mark.skip(reason="a nightly scenario: ./setup.sh test -m nightly")
        for item in items:
            if "nightly" in item.keywords:
                item.add_marker(later)
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="integration tests need root")
        for item in items:
            if "integration" in item.keywords:
                item.add_marker(skip)
