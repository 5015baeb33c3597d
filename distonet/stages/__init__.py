"""Stage kinds, one module each, found through a registry (stages/base.py).

Importing this package registers every kind, so the plan sees the whole chain whichever
module was imported first.
"""

from .base import REGISTRY, StageContext, StageKind, chain  # noqa: F401
from . import bootstrap, elements, hooks, initramfs, overlay, packages, repositories, seal, system  # noqa: F401,E402  (registers)
