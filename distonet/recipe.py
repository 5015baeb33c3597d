"""YAML recipes → frozen, validated Recipe models; `extends:` merging; errors that name file and key.

Merge rules (docs/recipes.md): maps merge deeply, lists append (parent first), scalars are
replaced by the child. `replace:` lists dotted key paths whose value the child replaces whole.
`name`, `description`, `extends` and `replace` are never inherited.
"""

from __future__ import annotations

import difflib
import json
import typing
from enum import StrEnum
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .errors import RecipeError
from .outputs import load_all as load_outputs


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class BootstrapTool(StrEnum):
    mmdebstrap = "mmdebstrap"
    debootstrap = "debootstrap"


class Firmware(StrEnum):
    bios = "bios"
    uefi = "uefi"


class Distribution(Model):
    suite: str = Field("trixie", description="Debian suite or codename")
    architecture: str = "amd64"
    components: tuple[str, ...] = ("main",)
    mirror: Optional[str] = Field(None, description="archive URL; default: the build host's apt mirror")
    bootstrap: BootstrapTool = BootstrapTool.mmdebstrap
    variant: str = Field("minbase", description="bootstrap variant (mmdebstrap/debootstrap --variant)")


class Kernel(Model):
    package: str = Field("linux-image-amd64", description="kernel package, installed in its own layer")
    initramfs: tuple[str, ...] = Field(("initramfs-tools",), description="packages that build the initrd")


class Boot(Model):
    cmdline: tuple[str, ...] = Field((), description="extra kernel command-line arguments")
    console: Optional[str] = Field("ttyS0,115200", description="serial console; null turns it off")
    firmware: tuple[Firmware, ...] = (Firmware.bios, Firmware.uefi)
    marker: Optional[str] = Field(None, description="regex the boot test waits for; default: a login prompt")
    timeout: int = Field(300, description="seconds a boot test waits for the marker")


class Network(Model):
    dhcp: bool = Field(True, description="DHCP on every Ethernet interface (systemd-networkd)")


class Access(Model):
    root_password_hash: Optional[str] = Field(None, description="crypt(3) hash; root stays locked without it")
    ssh_keys: tuple[str, ...] = Field((), description="public keys for root's authorized_keys")


def _outputs_model() -> type[BaseModel]:
    fields = {name: (Optional[cls.Options], None) for name, cls in sorted(load_outputs().items())}
    return create_model("Outputs", __base__=Model, **fields)


Outputs = _outputs_model()


class Recipe(Model):
    name: str
    description: str = ""
    extends: tuple[str, ...] = ()
    distribution: Distribution = Distribution()
    packages: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="named package layers, each a list; one stage per layer")
    kernel: Kernel = Kernel()
    boot: Boot = Boot()
    access: Access = Access()
    network: Network = Network()
    hostname: str = "distonet"
    outputs: Outputs = Field(default_factory=Outputs)  # type: ignore[valid-type]
    vars: dict[str, Any] = Field(default_factory=dict, description="values for site templates")
    replace: tuple[str, ...] = Field((), description="dotted key paths this recipe replaces instead of merging")

    def enabled_outputs(self) -> dict[str, BaseModel]:
        return {k: v for k, v in self.outputs if v is not None}

    def resolved(self) -> dict:
        return self.model_dump(mode="json")


UNINHERITED = ("name", "description", "extends", "replace")


# -- loading ---------------------------------------------------------------------------------

def recipe_path(recipes_dir: Path, name: str) -> Path:
    return Path(recipes_dir) / f"{name}.yaml"


def known_recipes(recipes_dir: Path) -> list[str]:
    return sorted(p.stem for p in Path(recipes_dir).glob("*.yaml"))


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise RecipeError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def _as_list(value, path: Path) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise RecipeError(f"{path}: extends: expected a recipe name or a list of names, got {value!r}")


def merge(parent: Any, child: Any, replace: set[str], at: str = "") -> Any:
    """Deep merge: maps merge, lists append, scalars and `replace`d paths take the child's value."""
    if at in replace:
        return child
    if isinstance(parent, dict) and isinstance(child, dict):
        out = dict(parent)
        for key, value in child.items():
            sub = f"{at}.{key}" if at else str(key)
            out[key] = merge(parent[key], value, replace, sub) if key in parent else value
        return out
    if isinstance(parent, list) and isinstance(child, list):
        return parent + [v for v in child if v not in parent]
    return child


def load_recipe(name: str, recipes_dir: Path) -> Recipe:
    """Load, check each file, merge the `extends:` chain and validate the result."""
    raw = _resolve(name, Path(recipes_dir), stack=())
    path = recipe_path(recipes_dir, name)
    return _validate(raw, path)


def _resolve(name: str, recipes_dir: Path, stack: tuple[str, ...], wanted_by: Path | None = None) -> dict:
    path = recipe_path(recipes_dir, name)
    if not path.is_file():
        where = f"{wanted_by}: extends" if wanted_by else str(path)
        known = ", ".join(known_recipes(recipes_dir)) or "none"
        close = difflib.get_close_matches(name, known_recipes(recipes_dir), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise RecipeError(f"{where}: no recipe named '{name}' in {recipes_dir}{hint}; known: {known}")
    if name in stack:
        cycle = " → ".join(stack[stack.index(name):] + (name,))
        raise RecipeError(f"{wanted_by}: extends: cycle {cycle}")
    data = _read(path)
    data.setdefault("name", name)
    data["extends"] = _as_list(data.get("extends"), path)
    if data["name"] != name:
        raise RecipeError(f"{path}: name: '{data['name']}' differs from the file name; "
                          f"rename the file or set name: {name}")
    _validate(data, path)  # each file alone, so an error names the file it is in
    merged: dict = {}
    for parent in data["extends"]:
        parent_data = _resolve(parent, recipes_dir, stack + (name,), wanted_by=path)
        merged = merge(merged, {k: v for k, v in parent_data.items() if k not in UNINHERITED}, set())
    replace = set(data.get("replace") or ())
    return merge(merged, data, replace)


def _validate(data: dict, path: Path) -> Recipe:
    try:
        return Recipe.model_validate_json(json.dumps(data, default=str))
    except ValidationError as exc:
        lines = [_describe(err, path) for err in exc.errors()]
        raise RecipeError("\n".join(lines)) from None


def _describe(err: dict, path: Path) -> str:
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        valid = _keys_at(Recipe, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(valid)}"
        what = "unknown output kind" if loc[:1] == ("outputs",) and len(loc) == 2 else "unknown key"
        return f"{path}: {key}: {what}{hint}"
    got = err.get("input")
    shown = "" if isinstance(got, (dict, list)) else f", got {json.dumps(got)}"
    return f"{path}: {key}: {err['msg'].lower()}{shown}"


def _keys_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names valid at `loc` inside `model` (for did-you-mean)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _unwrap(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


def _unwrap(annotation):
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        return args[0]
    return annotation


def json_schema() -> dict:
    schema = Recipe.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "distonet recipe"
    return schema
