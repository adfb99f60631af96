"""Figures the reliability tests record (kills, faults, rows compared...), printed at the end
of the run, and written as JSON to `REPLICA_FIGURES` when it names a file.

The suite runs in worker processes (pytest-xdist): each worker hands its figures to the
controlling process when it finishes, which adds them up and prints them.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

#: section -> name -> value.
FIGURES: dict[str, dict[str, Any]] = {}

#: The long figures (50 kills, 10 minutes of faults, ...) instead of the CI ones.
SOAK = os.environ.get("REPLICA_SOAK", "") not in ("", "0")

_KEY = "replica_figures"


def record(section: str, **values: Any) -> None:
    """Add figures under a section (values of the same name add up when numbers)."""
    entry = FIGURES.setdefault(section, {})
    for name, value in values.items():
        if isinstance(value, int | float) and isinstance(entry.get(name), int | float):
            entry[name] += value
        else:
            entry[name] = value


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a worker: its figures go to the controlling process
        workeroutput[_KEY] = json.dumps(FIGURES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    for section, values in json.loads(node.workeroutput.get(_KEY, "{}")).items():
        record(section, **values)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    mode = "soak" if SOAK else "CI"
    terminalreporter.section(f"reliability figures ({mode} mode)")
    for section, values in sorted(FIGURES.items()):
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
