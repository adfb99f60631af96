"""The reliability suite's fixtures.

`REPLICA_SOAK=1` runs the long versions (docs/reliability.md); the figures the tests record
are printed at the end of the run (tests/support/figures.py).
"""

from __future__ import annotations

import pytest

from replica.devserver.testing import devserver, devserver_factory  # noqa: F401

from .support import SOAK


@pytest.fixture
def soak() -> bool:
    return SOAK
