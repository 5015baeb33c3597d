"""The corpus of plausible mistakes (data/bad_recipes.yaml): each gives its one-line error at
`check` time, naming the file and the key, and none reaches a stage (loading runs nothing)."""

import base64
from pathlib import Path

import pytest
import yaml

from distonet.errors import RecipeError
from distonet.recipe import load_recipe

CASES = yaml.safe_load((Path(__file__).parent / "data/bad_recipes.yaml").read_text())


def test_the_corpus_is_large_and_names_are_unique():
    assert len(CASES) >= 40
    assert len({c["case"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_bad_recipe_gives_its_one_line_error(case, recipes, monkeypatch):
    import subprocess
    ran = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: ran.append(a) or pytest.fail("a command ran"))
    path = recipes / f"{case['case']}.yaml"
    if "bytes" in case:
        path.write_bytes(base64.b64decode(case["bytes"]))
    else:
        path.write_text(case["text"])
    with pytest.raises(RecipeError) as exc:
        load_recipe(case["case"], recipes)
    message = str(exc.value).replace(f"{recipes}/", "")
    assert case["error"] in message, message
    assert message.splitlines()[0].startswith(f"{case['case']}.yaml"), message
    assert "hunter2" not in message  # a secret is never echoed back
    assert ran == []
