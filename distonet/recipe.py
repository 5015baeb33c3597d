"""YAML recipes → frozen, validated Recipe models; `extends:` merging; errors that name file and key.

Merge rules (docs/recipes.md): maps merge deeply, lists append (parent first), scalars are
replaced by the child. `replace:` lists dotted key paths whose value the child replaces whole.
`name`, `description`, `extends` and `replace` are never inherited.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .enums import KNOWN_COMPONENTS, KNOWN_SUITES, Architecture, BootstrapTool, Chap, Firmware, NetbootMode, Variant
from .errors import RecipeError
from .paths import SUFFIXES, recipe_name  # noqa: F401  (in paths.py: the CLI names recipes without the models)
from .secrets import SECRET_KEYS
from .outputs import REGISTRY as OUTPUTS
from .validate import (CmdlineArg, Console, CryptHash, Hostname, LayerName, PackageName, RecipeName,
                       DebFile, DibValue, DibVar, ElementName, KeyFile, Keyboard, PinPackages, PinWhat, Locale, Regex, RepoComponent, RepoSuite, Shell, SshKey, Suite,
                       Text, TimeZone, Url, UserName, VarName)

RESERVED_LAYERS = ("kernel", "purge", "local")  # the kernel's own layer and the purge step (stages/packages.py)
MAX_LAYERS = 64
MAX_PACKAGES = 20000


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Distribution(Model):
    suite: Suite = Field("trixie", description="Debian suite or codename")
    architecture: Architecture = Architecture.amd64
    components: tuple[typing.Literal[KNOWN_COMPONENTS], ...] = Field(  # type: ignore[valid-type]
        ("main",), min_length=1, description="archive components")
    mirror: Optional[Url] = Field(None, description="archive URL; default: the build host's apt mirror")
    security_mirror: Optional[Url] = Field(
        None, description="security archive URL; default: the build host's security source")
    updates: bool = Field(True, description="add <suite>-updates (build and image)")
    security: bool = Field(True, description="add <suite>-security (build and image)")
    proxy: Optional[Url] = Field(None, description="apt proxy used while building, never written into "
                                                   "the image; default: the build host's apt proxy")
    bootstrap: BootstrapTool = BootstrapTool.mmdebstrap
    variant: Variant = Field(Variant.minbase, description="bootstrap variant (--variant)")


class Repository(Model):
    """An extra apt repository, signed: its key file is looked up in keys/ beside the recipe
    directories (a site keeps keys in its own repository)."""
    name: LayerName
    uri: Url
    suites: tuple[RepoSuite, ...] = Field(min_length=1)
    components: tuple[RepoComponent, ...] = ("main",)
    key: KeyFile = Field(description="the repository's signing key (armored .asc or binary .gpg) in keys/")


class Pin(Model):
    packages: PinPackages = "*"
    pin: PinWhat
    priority: int = Field(ge=-32768, le=32767)


class Apt(Model):
    recommends: bool | tuple[LayerName, ...] = Field(
        False, description="install Recommends too: true for every layer, or a list of layer names "
                           "(Debian's science-* metapackages list their contents as Recommends)")
    direct_recommends: tuple[LayerName, ...] = Field(
        (), description="layers whose packages bring their own Recommends but not the Recommends of "
                        "those: a science-* metapackage's contents without every member's extras")
    pins: tuple[Pin, ...] = Field((), description="apt preferences, written before the package layers")
    debs: tuple[DebFile, ...] = Field((), description="local .deb files in debs/, installed after the "
                                                      "layers (packages.local)")
    purge: tuple[PackageName, ...] = Field((), description="packages removed, with their configuration, "
                                                         "after the layers (packages.purge)")


class Iscsi(Model):
    iqn: str = Field("iqn.2026-11.invalid.distonet", pattern=r"^iqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9.-]+$",
                     description="the site's naming authority (iqn.YYYY-MM.reversed.domain): the target is "
                                 "IQN:RECIPE, a node's initiator IQN:HOSTNAME; set your own")
    chap: Chap = Field(Chap.one_way, description="none, one-way (the target checks the node) or mutual; the "
                                                 "secrets stay off the kernel command line (docs/netboot.md)")
    port: int = Field(3260, ge=1, le=65535)
    ibft: bool = Field(False, description="iPXE entries log in to the target themselves (sanhook) and hand it to "
                                          "the kernel in the firmware's iBFT (target, portal, initiator and "
                                          "CHAP; `iscsi_auto`); pxelinux and GRUB keep the command line")


class Netboot(Model):
    modes: tuple[NetbootMode, ...] = Field(
        (), description="diskless boot modes the PXE menu offers: nfs (read-only root over NFS, changes "
                        "in RAM), nfs-persistent (changes in the node's layer on NFS), iscsi (root on an "
                        "iSCSI LUN, changes in RAM), iscsi-persistent (changes in the node's own LUN); "
                        "the initrd gets hooks/initramfs/{netroot,union,iscsi}")
    export: Optional[str] = Field(None, pattern=r"^/[A-Za-z0-9._/{}-]*$",
                                  description="the root's path as nodes mount it; default /srv/distonet/{recipe}")
    server: Optional[str] = Field(None, pattern=r"^[0-9A-Za-z.:-]+$",
                                  description="NFS and iSCSI server address; default: the DHCP boot server (next-server)")
    nfs_version: Literal[3, 4] = Field(3, description="3 (klibc's nfsmount; needs rpcbind and mountd) or 4 "
                                                      "(NFSv4.1, the kernel's client through hooks/initramfs/netroot; "
                                                      "port 2049 alone); a host of the inventory may differ")
    layers: str = Field("/srv/distonet/layers/{recipe}", pattern=r"^/[A-Za-z0-9._/{}-]*$",
                        description="nfs-persistent: where each node's layer lives on the NFS server "
                                    "(LAYERS/HOSTNAME/layer.ext4, made by distonet clones)")
    iscsi: Iscsi = Iscsi()


class Dib(Model):
    elements: tuple[ElementName, ...] = Field(
        (), description="diskimage-builder elements: elements/ beside the recipes, then the installed "
                        "diskimage-builder's; their dependencies come along (docs/elements.md)")
    environment: dict[DibVar, DibValue] = Field(
        default_factory=dict, description="DIB_* variables the elements read (e.g. DIB_DEV_USER_USERNAME)")


class User(Model):
    name: UserName
    uid: Optional[int] = Field(None, ge=1000, le=59999, description="default: the next free one")
    groups: tuple[UserName, ...] = Field((), description="supplementary groups (made if missing)")
    shell: Shell = "/bin/bash"
    ssh_keys: tuple[SshKey, ...] = ()
    sudo: bool = Field(False, description="full sudo (the image needs the sudo package)")
    password_hash: Optional[CryptHash] = Field(None, description="crypt(3); locked without it")


class System(Model):
    locale: Optional[Locale] = Field(None, description="LANG, e.g. en_GB.UTF-8 (other than C.UTF-8 needs locales)")
    timezone: Optional[TimeZone] = Field(None, description="e.g. Europe/Paris (needs tzdata)")
    keyboard: Optional[Keyboard] = Field(None, description="console and X keyboard layout, e.g. fr")
    banner: Optional[Text] = Field(None, description="the text before the login prompt (/etc/issue, issue.net)")


class Kernel(Model):
    package: PackageName = Field("linux-image-amd64", description="kernel package, installed in its own layer")
    initramfs: tuple[PackageName, ...] = Field(("initramfs-tools",), description="packages that build the initrd")


class Boot(Model):
    cmdline: tuple[CmdlineArg, ...] = Field((), max_length=64, description="extra kernel command-line arguments")
    console: Optional[Console] = Field("ttyS0,115200", description="serial console; null turns it off")
    firmware: tuple[Firmware, ...] = Field((Firmware.bios, Firmware.uefi), min_length=1)
    marker: Optional[Regex] = Field(None, description="regex the boot test waits for; default: a login prompt")
    timeout: int = Field(300, ge=10, le=7200, description="seconds a boot test waits for the marker")


class Network(Model):
    dhcp: bool = Field(True, description="DHCP on every Ethernet interface (systemd-networkd)")


class Access(Model):
    root_password_hash: Optional[CryptHash] = Field(
        None, description="crypt(3) hash (openssl passwd -6); '!' locks; root stays locked without it")
    ssh_keys: tuple[SshKey, ...] = Field((), max_length=1000, description="public keys for root's authorized_keys")
    ssh_password_login: bool = Field(False, description="let sshd take passwords (off: keys only, "
                                                        "whatever the distribution's default)")


def _outputs_model() -> type[BaseModel]:
    fields = {name: (Optional[cls.Options], None) for name, cls in sorted(OUTPUTS.items())}
    return create_model("Outputs", __base__=Model, **fields)


Outputs = _outputs_model()


class Recipe(Model):
    name: RecipeName
    description: Text = ""
    extends: tuple[RecipeName, ...] = ()
    distribution: Distribution = Distribution()
    packages: dict[LayerName, tuple[PackageName, ...]] = Field(
        default_factory=dict, max_length=MAX_LAYERS,
        description="named package layers, each a list; one stage per layer")
    kernel: Kernel = Kernel()
    apt: Apt = Apt()
    boot: Boot = Boot()
    access: Access = Access()
    users: tuple[User, ...] = Field((), description="local users, made before seal")
    groups: tuple[UserName, ...] = Field((), description="local groups, made before the users")
    system: System = System()
    network: Network = Network()
    hostname: Optional[Hostname] = Field("distonet", description="null: the name comes from DHCP")
    outputs: Outputs = Field(default_factory=Outputs)  # type: ignore[valid-type]
    overlays: tuple[LayerName, ...] = Field(
        (), description="site overlays (overlays/<name>/), applied in order after the packages")
    repositories: tuple[Repository, ...] = Field(
        (), description="extra apt repositories (deb822 with Signed-By), added before the package layers")
    hooks: tuple[LayerName, ...] = Field(
        (), description="hook sets (hooks/chroot/<name>/<phase>/NN-script), run in this order")
    dib: Dib = Dib()
    netboot: Netboot = Netboot()
    site: Optional[RecipeName] = Field(None, description="site file sites/<name>.yaml (site= overrides)")
    vars: dict[VarName, Any] = Field(default_factory=dict, description="values for the overlays' templates")
    replace: tuple[str, ...] = Field((), description="dotted key paths this recipe replaces instead of merging")

    def enabled_outputs(self) -> dict[str, BaseModel]:
        return {k: v for k, v in self.outputs if v is not None}

    def resolved(self) -> dict:
        from .secrets import redact
        return redact(self.model_dump(mode="json"))


UNINHERITED = ("name", "description", "extends", "replace")


# -- loading ---------------------------------------------------------------------------------

def _dirs(recipes: Path | Sequence[Path]) -> list[Path]:
    return [Path(recipes)] if isinstance(recipes, (str, Path)) else [Path(d) for d in recipes]


def find_recipe(name: str, recipes: Path | Sequence[Path]) -> Path | None:
    for d in _dirs(recipes):
        for suffix in SUFFIXES:
            if (d / f"{name}{suffix}").is_file():
                return d / f"{name}{suffix}"
    return None


def recipe_path(recipes: Path | Sequence[Path], name: str) -> Path:
    return find_recipe(name, recipes) or _dirs(recipes)[0] / f"{name}.yaml"


def known_recipes(recipes: Path | Sequence[Path]) -> list[str]:
    names = {p.stem for d in _dirs(recipes) for suffix in SUFFIXES for p in d.glob(f"*{suffix}")}
    return sorted(names)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""


def _construct_mapping(loader, node, deep=False):
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first on line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read(path: Path) -> dict:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise RecipeError(f"{path}:{line}: not UTF-8 (byte {exc.start}: 0x{raw[exc.start]:02x})",
                          hint="save the file as UTF-8") from None
    if not text.strip() or all(l.strip().startswith("#") or not l.strip() for l in text.splitlines()):
        raise RecipeError(f"{path}: empty recipe", hint="a recipe needs at least `extends: minimal` or its own keys")
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise RecipeError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
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
    raise RecipeError(f"{path}: extends: expected a recipe name or a list of names, got {json.dumps(value, default=str)}")


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


def load_recipe(name: str, recipes: Path | Sequence[Path]) -> Recipe:
    """Load, check each file, merge the `extends:` chain and validate the result."""
    name = recipe_name(name)
    raw = _resolve(name, _dirs(recipes), stack=())
    path = recipe_path(recipes, name)
    recipe = _validate(raw, path)
    _check_semantics(recipe, path)
    return recipe


def _resolve(name: str, dirs: list[Path], stack: tuple[str, ...], wanted_by: Path | None = None) -> dict:
    where = f"{wanted_by}: extends" if wanted_by else None
    if not NAME_OK(name):
        raise RecipeError(f"{where or name}: '{name}' is not a recipe name",
                          hint="recipes are named by their file in a recipe directory: a-z, 0-9, _ and -; "
                               "paths such as ../x are not allowed")
    path = find_recipe(name, dirs)
    if path is None:
        known = known_recipes(dirs)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        searched = ", ".join(str(d) for d in dirs)
        raise RecipeError(f"{where or dirs[0] / (name + '.yaml')}: no recipe named '{name}' in {searched}{hint}; "
                          f"known: {', '.join(known) or 'none'}")
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
        parent_data = _resolve(parent, dirs, stack + (name,), wanted_by=path)
        merged = merge(merged, {k: v for k, v in parent_data.items() if k not in UNINHERITED}, set())
    replace = list(data.get("replace") or ())
    for at in replace:
        _check_replace_path(at, path)
    return merge(merged, data, set(replace))


def NAME_OK(name: str) -> bool:
    from .validate import NAME_RE
    return bool(NAME_RE.match(name))


def _check_replace_path(at: str, path: Path) -> None:
    """A `replace:` path must name a key the model has (maps of free keys accept any key below)."""
    current: Any = Recipe
    walked = []
    for part in at.split("."):
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = sorted(current.model_fields)
            if part not in current.model_fields or (not walked and part in UNINHERITED):
                valid = [f for f in fields if walked or f not in UNINHERITED]
                close = difflib.get_close_matches(part, valid, n=1, cutoff=0.5)
                hint = f"did you mean '{'.'.join(walked + [close[0]])}'?" if close else f"valid keys: {', '.join(valid)}"
                raise RecipeError(f"{path}: replace: unknown path '{at}'; {hint}")
            current = _unwrap(current.model_fields[part].annotation)
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1] if typing.get_args(current) else Any
        else:
            raise RecipeError(f"{path}: replace: '{at}' goes below a value that has no keys "
                              f"('{'.'.join(walked)}'); replace '{'.'.join(walked)}' itself")
        walked.append(part)


def _check_semantics(recipe: Recipe, path: Path) -> None:
    """What the field types cannot say alone."""
    dist = recipe.distribution
    users = [u.name for u in recipe.users]
    if len(set(users)) != len(users):
        raise RecipeError(f"{path}: users: two users named '{next(n for n in users if users.count(n) > 1)}'")
    if "root" in users:
        raise RecipeError(f"{path}: users: root is set by access:, not users:")
    names = [r.name for r in recipe.repositories]
    if len(set(names)) != len(names):
        raise RecipeError(f"{path}: repositories: two repositories named '{next(n for n in names if names.count(n) > 1)}'")
    if len(set(recipe.hooks)) != len(recipe.hooks):
        raise RecipeError(f"{path}: hooks: a hook set is named twice")
    if len(set(recipe.overlays)) != len(recipe.overlays):
        raise RecipeError(f"{path}: overlays: an overlay is named twice")
    if recipe.enabled_outputs().keys() & {"pxe", "config"} and not recipe.netboot.modes:
        raise RecipeError(f"{path}: outputs.pxe/config: the recipe enables no netboot.modes",
                          hint="add netboot: {modes: [nfs]}")
    if {NetbootMode.iscsi, NetbootMode.iscsi_persistent} & set(recipe.netboot.modes) and not any(
            "open-iscsi" in pkgs for pkgs in (recipe.kernel.initramfs, *recipe.packages.values())):
        raise RecipeError(f"{path}: netboot.modes: iscsi needs open-iscsi in the image (its initramfs hook logs in)",
                          hint="add open-iscsi to kernel.initramfs")
    if "distonet" in recipe.vars:
        raise RecipeError(f"{path}: vars.distonet: reserved for build facts ({{{{ distonet.recipe }}}} …)")
    named = {"recommends": recipe.apt.recommends if isinstance(recipe.apt.recommends, tuple) else (),
             "direct_recommends": recipe.apt.direct_recommends}
    for key, layers in named.items():
        for layer in layers:
            if layer not in recipe.packages and layer != "kernel":
                close = difflib.get_close_matches(layer, list(recipe.packages), n=1)
                raise RecipeError(f"{path}: apt.{key}: no layer '{layer}'"
                                  + (f" (did you mean '{close[0]}'?)" if close else "")
                                  + f"; layers: {', '.join(recipe.packages) or 'none'}")
    both = [layer for layer in recipe.apt.direct_recommends
            if recipe.apt.recommends is True or layer in named["recommends"]]
    if both:
        raise RecipeError(f"{path}: apt.direct_recommends: layer '{both[0]}' already gets every "
                          f"Recommends from apt.recommends; name it in one of the two")
    for layer in recipe.packages:
        if layer in RESERVED_LAYERS:
            raise RecipeError(f"{path}: packages.{layer}: the layer name '{layer}' is reserved "
                              "(kernel: kernel.package and kernel.initramfs; purge: apt.purge; local: apt.debs); "
                              "choose another name")
    if dist.suite not in KNOWN_SUITES:
        close = difflib.get_close_matches(dist.suite, KNOWN_SUITES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise RecipeError(f"{path}: distribution.suite: unknown suite '{dist.suite}'{hint}; "
                          f"known: {', '.join(KNOWN_SUITES)}")
    if dist.bootstrap == BootstrapTool.debootstrap and dist.variant not in (Variant.minbase, Variant.buildd):
        raise RecipeError(f"{path}: distribution.variant: debootstrap accepts minbase or buildd, got '{dist.variant}'")
    total = sum(len(p) for p in recipe.packages.values())
    if total > MAX_PACKAGES:
        raise RecipeError(f"{path}: packages: {total} names; more than {MAX_PACKAGES} is surely a mistake")


def _validate(data: dict, path: Path) -> Recipe:
    try:
        return Recipe.model_validate_json(json.dumps(data, default=str))
    except ValidationError as exc:
        lines = [_describe(err, path) for err in exc.errors()]
        raise RecipeError("\n".join(lines)) from None


def _describe(err: dict, path: Path, model: type[BaseModel] | None = None) -> str:
    """One pydantic error as `FILE: KEY: what is wrong, got VALUE` (secrets never shown)."""
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        valid = _keys_at(model or Recipe, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(valid)}"
        what = "unknown output kind" if loc[:1] == ("outputs",) and len(loc) == 2 else "unknown key"
        return f"{path}: {key}: {what}{hint}"
    if loc and loc[-1] == "[key]":  # a map's key (a layer name) is wrong, not its value
        key = ".".join(str(p) for p in loc[:-1])
    got = err.get("input")
    secret = any(str(p) in SECRET_KEYS for p in loc)
    shown = "" if isinstance(got, (dict, list)) or secret or err["type"] == "value_error" \
        else f", got {json.dumps(got, default=str)}"
    msg = err["msg"]
    msg = msg[len("Value error, "):] if msg.startswith("Value error, ") else msg[:1].lower() + msg[1:]
    msg = msg.replace("tuple", "list").replace("valid array", "valid list")
    return f"{path}: {key}: {msg}{shown}"


def _keys_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names valid at `loc` inside `model` (for did-you-mean)."""
    current: Any = model
    for part in loc:
        if typing.get_origin(current) is dict:   # a map's key (a layer, a host): into its value
            current = _unwrap(typing.get_args(current)[1])
            continue
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
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and args:
        return args[0]
    return annotation


def json_schema() -> dict:
    schema = Recipe.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "distonet recipe"
    # What a file may say, not what the loader makes of it: the name comes from the file name,
    # and `extends` may be one name or a list.
    schema["required"] = [r for r in schema.get("required", []) if r != "name"]
    if not schema["required"]:
        schema.pop("required")
    ext = schema["properties"]["extends"]
    schema["properties"]["extends"] = {"anyOf": [ext["items"], ext], "default": [],
                                       "description": "a parent recipe, or a list merged left to right"}
    return schema
