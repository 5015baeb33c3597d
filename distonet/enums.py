"""Closed sets of values, in a leaf module: recipe, plan, stages and outputs all import these,
and nothing here imports them back (so the recipe schema never depends on import order)."""

from enum import StrEnum


class BootstrapTool(StrEnum):
    mmdebstrap = "mmdebstrap"
    debootstrap = "debootstrap"


class Firmware(StrEnum):
    bios = "bios"
    uefi = "uefi"


class NetbootMode(StrEnum):
    """How a diskless node gets its root, always read-only under a writable union layer."""
    nfs = "nfs"                         # root over NFS, changes in RAM (tmpfs)
    nfs_persistent = "nfs-persistent"   # root over NFS, changes in the node's layer on NFS
    iscsi = "iscsi"                     # root on an iSCSI LUN (CHAP), changes in RAM
    iscsi_persistent = "iscsi-persistent"  # root on the LUN, changes in the node's own LUN


class Chap(StrEnum):
    """iSCSI authentication: none, the target checks the node (one-way), or both check (mutual)."""
    none = "none"
    one_way = "one-way"
    mutual = "mutual"


class Variant(StrEnum):
    """What mmdebstrap and debootstrap both accept as --variant."""
    minbase = "minbase"
    buildd = "buildd"
    standard = "standard"   # mmdebstrap only; debootstrap's default is "-"
    important = "important"
    required = "required"
    essential = "essential"


class Architecture(StrEnum):
    amd64 = "amd64"
    arm64 = "arm64"
    i386 = "i386"
    armhf = "armhf"
    ppc64el = "ppc64el"
    s390x = "s390x"
    riscv64 = "riscv64"


# Suites a recipe may name without asking the archive first; anything else must exist there.
KNOWN_SUITES = ("bookworm", "trixie", "forky", "sid", "unstable", "testing", "stable", "oldstable",
                "bullseye", "experimental")
KNOWN_COMPONENTS = ("main", "contrib", "non-free", "non-free-firmware")
