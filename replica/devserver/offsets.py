"""Shape log offsets: `-1`, `<tx>_<op>` and `<tx>_inf` (electric-protocol.md §4.1)."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The `op` of `<tx>_inf` offsets: greater than any op index.
INF = 1 << 62
_OFFSET_RE = re.compile(r"^(\d+)_(\d+|inf)$")


@dataclass(frozen=True, order=True)
class Offset:
    """A position in a shape log; `-1` sorts before everything, `0_inf` ends the snapshot."""

    tx: int
    op: int

    @classmethod
    def parse(cls, text: str) -> Offset:
        """Parse `-1`, `<tx>_<op>` or `<tx>_inf` (ValueError otherwise; `now` is not one)."""
        if text == "-1":
            return BEFORE_ALL
        m = _OFFSET_RE.match(text)
        if not m:
            raise ValueError(f"invalid offset {text!r}")
        op = INF if m.group(2) == "inf" else int(m.group(2))
        return cls(int(m.group(1)), op)

    def __str__(self) -> str:
        if self.tx < 0:
            return "-1"
        return f"{self.tx}_inf" if self.op == INF else f"{self.tx}_{self.op}"


BEFORE_ALL = Offset(-1, 0)
SNAPSHOT_END = Offset(0, INF)
