"""Every module imports alone, in a fresh interpreter, in several orders, and the recipe schema
is the same whichever came first (the recipe ↔ outputs cycle is gone)."""

import pkgutil
import subprocess
import sys

import pytest

import distonet
from distonet import PROJECT_ROOT

MODULES = sorted(m.name for m in pkgutil.walk_packages(distonet.__path__, "distonet.")
                 if not m.name.endswith("__main__"))

PROBE = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
from distonet.recipe import Recipe, load_recipe
from distonet.paths import Paths
r = load_recipe("minimal", Paths.default().search)
print(sorted(r.enabled_outputs()), sorted(Recipe.model_json_schema()["$defs"]["Outputs"]["properties"]))
"""


def probe(*names: str) -> str:
    proc = subprocess.run([sys.executable, "-c", PROBE, *names], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_there_are_modules_to_check():
    assert {"distonet.recipe", "distonet.outputs.disk", "distonet.stages.seal", "distonet.store"} <= set(MODULES)


@pytest.mark.parametrize("first", ["distonet.outputs.disk", "distonet.outputs.qcow2", "distonet.stages.seal",
                                   "distonet.plan", "distonet.tasks", "distonet.recipe", "distonet.cli"])
def test_import_order_does_not_change_the_schema(first):
    assert probe(first) == probe("distonet.recipe")


def test_every_module_imports_alone_and_all_in_reverse():
    expected = probe()
    for name in MODULES:
        assert probe(name) == expected, name
    assert probe(*reversed(MODULES)) == expected
