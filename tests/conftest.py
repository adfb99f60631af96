"""Shared test configuration."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# HYPOTHESIS_PROFILE=soak runs every property test with many more examples.
settings.register_profile("default", max_examples=150)
settings.register_profile("soak", max_examples=5000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# `db_path` and `store` for every test package; the reliability figures printed at the end.
pytest_plugins = ["tests.support.fixtures", "tests.support.figures"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Files holding slow tests start first: run in worker processes, the longest tests would
    # otherwise end the run alone on one worker while the others have nothing left to do.
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # "No tests collected" is not a failure for CI (a fresh checkout may select none).
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK
