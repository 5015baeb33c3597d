"""Stable digests of plain data: the stage and output keys are made of these."""

import hashlib
import json
from typing import Any


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
