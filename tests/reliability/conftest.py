"""The reliability suite's fixtures, and the figures it prints at the end of the run.

`REPLICA_SOAK=1` runs the long versions (docs/reliability.md); `REPLICA_FIGURES=PATH`
also writes the figures as JSON to PATH.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from replica.devserver.testing import devserver, devserver_factory  # noqa: F401

from .support import FIGURES, SOAK


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    mode = "soak" if SOAK else "CI"
    terminalreporter.section(f"reliability figures ({mode} mode)")
    for section, values in FIGURES.items():
        shown = ", ".join(f"{name}={_show(value)}" for name, value in values.items())
        terminalreporter.write_line(f"{section}: {shown}")
    target = os.environ.get("REPLICA_FIGURES")
    if target:
        with open(target, "w") as out:
            json.dump({"mode": mode, "figures": FIGURES}, out, indent=2, sort_keys=True)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return str(value)


@pytest.fixture
def soak() -> bool:
    return SOAK
