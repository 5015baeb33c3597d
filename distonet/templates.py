"""The documents distonet ships as Jinja2 templates (distonet/templates/<folder>/*.j2): boot
menus, server configurations, hypervisor domains. Rendered with StrictUndefined; XML templates
and HTML templates autoescaped, so a recipe's text cannot break the document."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).parent / "templates"


@lru_cache(maxsize=None)
def _env():
    import jinja2
    return jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT), undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                              autoescape=jinja2.select_autoescape(enabled_extensions=("xml.j2", "ovf.j2", "html.j2"),
                                                                  default_for_string=False, default=False))


def render(template: str, **values) -> str:
    """`template` relative to the templates folder, e.g. netboot/grub.cfg.j2."""
    return _env().get_template(template).render(**values)


def digest(folder: str) -> str:
    """A folder's templates' content, for the keys of the outputs rendered from them."""
    h = hashlib.sha256()
    for f in sorted((ROOT / folder).glob("*.j2")):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()
