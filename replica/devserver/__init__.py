"""`replica dev-server`: a local emulator of ElectricSQL's shape API and Trigger.dev Realtime.

`DevServer` runs it in-process (tests, demos, benchmarks); `create_app` gives the bare ASGI
app; the `replica dev-server` command serves it from the command line. See docs/emulator.md.
Names are imported lazily so that `replica --help` does not load the web stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from replica.devserver.app import create_app
    from replica.devserver.config import DevServerConfig, make_secret_key
    from replica.devserver.emulator import Emulator
    from replica.devserver.faults import FaultRule
    from replica.devserver.request_counts import RequestTally
    from replica.devserver.server import DevServer

__all__ = [
    "DevServer",
    "DevServerConfig",
    "Emulator",
    "FaultRule",
    "RequestTally",
    "create_app",
    "make_secret_key",
]

_HOMES = {
    "DevServer": "replica.devserver.server",
    "DevServerConfig": "replica.devserver.config",
    "Emulator": "replica.devserver.emulator",
    "FaultRule": "replica.devserver.faults",
    "RequestTally": "replica.devserver.request_counts",
    "create_app": "replica.devserver.app",
    "make_secret_key": "replica.devserver.config",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'replica.devserver' has no attribute {name!r}")
