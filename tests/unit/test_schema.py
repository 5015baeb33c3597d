"""The published JSON Schema is current and accepts every shipped recipe, as an editor sees them."""

import json

import jsonschema
import yaml

from distonet import PROJECT_ROOT
from distonet.recipe import json_schema, known_recipes

SCHEMA = json.loads((PROJECT_ROOT / "docs/recipe.schema.json").read_text())


def test_published_schema_is_current():
    assert SCHEMA == json_schema(), "regenerate: distonet schema > docs/recipe.schema.json"


def test_schema_accepts_every_shipped_recipe():
    names = known_recipes(PROJECT_ROOT / "recipes")
    assert names
    for name in names:
        data = yaml.safe_load((PROJECT_ROOT / "recipes" / f"{name}.yaml").read_text())
        jsonschema.validate(data, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_schema_accepts_extends_as_a_name_or_a_list_and_refuses_unknown_keys():
    v = jsonschema.Draft202012Validator(SCHEMA)
    assert v.is_valid({"extends": "minimal"}) and v.is_valid({"extends": ["a", "b"]})
    assert not v.is_valid({"pakages": {}})
