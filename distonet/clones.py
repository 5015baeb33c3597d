"""Per-node writable layers for the inventory's machines (`distonet clones`), made beside the
master and never from a copy of it: a persistent node keeps its changes in
LAYERS/<host name>/layer.ext4, a sparse ext4 file that its initrd loop-mounts over NFS
(nfs-persistent; overlayfs cannot keep an upper layer on NFS itself) or that the node's own
iSCSI target serves as a second LUN (iscsi-persistent), the upper layer of its union root. A layer that
exists is a node's state: it is never replaced; `--reset HOST` is how an operator starts a
node afresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import log
from .host.run import run
from .netboot import LAYER_LABEL

LAYER = "layer.ext4"
LABEL = LAYER_LABEL   # an iSCSI layer LUN is found by it (distonet.union=dev:/dev/disk/by-label/…)


@dataclass(frozen=True)
class Made:
    host: str
    path: Path
    made: bool     # False: it was there already, kept


def mkfs_argv(path: Path, size_mib: int) -> list[str]:
    # Sparse: a 4 GiB layer takes a few MiB on the server until the node writes.
    return ["mkfs.ext4", "-q", "-F", "-L", LABEL, "-m", "0", "-E", "root_owner=0:0,lazy_itable_init=1",
            str(path), f"{size_mib}M"]


def make_layer(folder: Path, size_mib: int = 4096, runner=run, reset: bool = False) -> tuple[Path, bool]:
    """FOLDER/layer.ext4, made if missing (or `reset`); returns (path, made now)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LAYER
    if path.exists() and not reset:
        return path, False
    tmp = folder / f".{LAYER}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        runner(mkfs_argv(tmp, size_mib), capture=True)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path, True


def make_clones(hosts: list[dict], layers: Path, size_mib: int = 4096, reset: tuple[str, ...] = (),
                runner=run) -> list[Made]:
    """A layer for each persistent host of the inventory (inventory.facts): on NFS, or the file
    the node's iSCSI target serves as its second LUN."""
    out = []
    for h in hosts:
        if h["mode"] not in ("nfs-persistent", "iscsi-persistent"):
            continue
        path, made = make_layer(Path(layers) / h["hostname"], size_mib, runner, reset=h["hostname"] in reset)
        log.info(f"clones: {h['hostname']}: {path} {'made' if made else 'kept (it holds the node’s changes)'}")
        out.append(Made(h["hostname"], path, made))
    return out
