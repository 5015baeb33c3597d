"""Values that must never be written where others read them: stamps, manifests, logs, argv."""

from __future__ import annotations

from typing import Any

SECRET_KEYS = frozenset({"root_password_hash", "password_hash"})
REDACTED = "<redacted>"


def redact(data: Any) -> Any:
    """A copy of `data` with every secret value replaced (None stays None: 'not set' is no secret)."""
    if isinstance(data, dict):
        return {k: (REDACTED if k in SECRET_KEYS and v is not None else redact(v)) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [redact(v) for v in data]
    return data
