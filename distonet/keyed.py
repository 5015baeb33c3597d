"""What a planned stage and output are called by, shared by the plan (plan.py) and its kept
summary (plancache.py), which must not import the plan's heavy modules."""

from __future__ import annotations


class Keyed:
    key: str

    @property
    def short(self) -> str:
        return self.key[:12]


class Chained(Keyed):
    parent: "Chained | None"

    def ancestry(self) -> list:
        """This stage and its ancestors, nearest first (the overlayfs lowerdir order)."""
        out, s = [], self
        while s is not None:
            out.append(s)
            s = s.parent
        return out
