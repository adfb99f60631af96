"""`replica dev-server`: a local emulator of ElectricSQL's shape API and Trigger.dev Realtime.

`DevServer` runs it in-process (tests, demos, benchmarks); `create_app` gives the bare ASGI
app; the `replica dev-server` command serves it from the command line. See docs/emulator.md.
"""

from __future__ import annotations

from replica.devserver.app import create_app
from replica.devserver.config import DevServerConfig, make_secret_key
from replica.devserver.emulator import Emulator
from replica.devserver.faults import FaultRule
from replica.devserver.server import DevServer

__all__ = [
    "DevServer",
    "DevServerConfig",
    "Emulator",
    "FaultRule",
    "create_app",
    "make_secret_key",
]
