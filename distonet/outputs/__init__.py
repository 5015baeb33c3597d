"""Artifact kinds, one module each, found through a registry (outputs/base.py).

Importing this package registers every kind, whichever module was imported first, so the
recipe schema (built from the registry) never depends on import order.
"""

from .base import REGISTRY, BuildFacts, Options, Output, OutputContext  # noqa: F401
from . import config, disk, iso, iscsi, kernel, libvirt, nfsroot, ova, pxe, qcow2, rootfs, sbom, squashfs, xen  # noqa: F401,E402  (registers)
