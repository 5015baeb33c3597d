"""distonet: one YAML recipe to every bootable artifact a site needs."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
__version__ = "0.2.0"
