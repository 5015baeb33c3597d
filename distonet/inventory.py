"""The site's machines: sites/<site>/hosts.yaml declares each diskless node (its MAC address,
host name, recipe, boot mode and extra kernel arguments), the seed lab's "declare each machine
for PXE" step. The pxe output makes one boot entry per host of its recipe, `distonet clones`
makes their persistent layers, and config/ lists their initiator names for the iSCSI target.

    hosts:
      node07: {mac: "52:54:00:00:00:07", recipe: hpc-node, mode: nfs-persistent}
      node08: {mac: "52:54:00:00:00:08", recipe: hpc-node, mode: iscsi, args: [quiet]}
      node09: {mac: "52:54:00:00:00:09", recipe: hpc-node, mode: nfs, nfs_version: 4}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, Optional

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from .enums import NetbootMode
from .errors import RecipeError
from .validate import CmdlineArg, Hostname, RecipeName

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def _mac(value: str) -> str:
    value = value.lower().replace("-", ":")
    if not MAC_RE.match(value):
        raise ValueError("a MAC address such as 52:54:00:12:34:56")
    return value


Mac = Annotated[str, AfterValidator(_mac)]


def _ipv4(value: str) -> str:
    import ipaddress
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError("an IPv4 address such as 192.168.10.7") from None
    if address.is_unspecified or address.is_multicast or address.is_loopback or str(address).endswith(".255"):
        raise ValueError(f"{value} cannot be a host's address (unspecified, loopback, multicast or broadcast)")
    return str(address)


IPv4 = Annotated[str, AfterValidator(_ipv4)]


class Host(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mac: Mac
    recipe: RecipeName
    mode: NetbootMode = Field(NetbootMode.nfs, description="the boot entry this host takes")
    args: tuple[CmdlineArg, ...] = Field((), description="extra kernel arguments for this host")
    address: Optional[IPv4] = Field(None, description="a fixed IPv4 address (dnsmasq)")
    nfs_version: Optional[Literal[3, 4]] = Field(None, description="this host's NFS version, if not its recipe's "
                                                                   "(netboot.nfs_version): a fleet moves host by host")
    ibft: Optional[bool] = Field(None, description="iscsi modes: this host's iPXE script hands the target to the "
                                                   "kernel in the iBFT, if not its recipe's (netboot.iscsi.ibft)")


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    hosts: dict[Hostname, Host] = Field(default_factory=dict)


def find(site: str | None, site_dirs) -> Path | None:
    if not site:
        return None
    return next((d / site / "hosts.yaml" for d in site_dirs if (d / site / "hosts.yaml").is_file()), None)


def load(path: Path) -> Inventory:
    from .recipe import _describe
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    try:
        inv = Inventory.model_validate(data)
    except ValidationError as exc:
        raise RecipeError("\n".join(_describe(e, path, Inventory) for e in exc.errors())) from None
    macs: dict[str, str] = {}
    for name, host in inv.hosts.items():
        if host.mac in macs:
            raise RecipeError(f"{path}: hosts.{name}.mac: {host.mac} is already {macs[host.mac]}'s",
                              hint="each machine has its own MAC address")
        macs[host.mac] = name
    addresses: dict[str, str] = {}
    for name, host in inv.hosts.items():
        if host.address and host.address in addresses:
            raise RecipeError(f"{path}: hosts.{name}.address: {host.address} is already {addresses[host.address]}'s",
                              hint="give each machine its own address")
        if host.address:
            addresses[host.address] = name
    return inv


def facts(site: str | None, site_dirs, recipe: str, modes) -> dict:
    """The hosts of `recipe` in the site's inventory, as plain data for the plan (and its keys)."""
    path = find(site, site_dirs)
    if path is None:
        return {"file": None, "hosts": []}
    inv = load(path)
    hosts = []
    for name, host in sorted(inv.hosts.items()):
        if host.recipe != recipe:
            continue
        if host.mode not in modes:
            raise RecipeError(f"{path}: hosts.{name}.mode: {recipe} offers no '{host.mode}' boot",
                              hint=f"netboot.modes of {recipe}: {', '.join(map(str, modes)) or 'none'}")
        hosts.append({"hostname": name, **host.model_dump(mode="json")})
    return {"file": str(path), "hosts": hosts}

