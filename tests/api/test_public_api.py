"""The public face of the package: `replica.__all__` is complete, sorted and documented."""

from __future__ import annotations

import inspect

import replica


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert replica.__all__ == sorted(replica.__all__)
    for name in replica.__all__:
        assert getattr(replica, name) is not None


def test_every_public_name_is_exported() -> None:
    for name in replica.__all__:
        getattr(replica, name)  # load the lazy ones
    public = {
        name
        for name, value in vars(replica).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public <= set(replica.__all__), public - set(replica.__all__)


def test_every_exported_name_has_a_docstring() -> None:
    for name in replica.__all__:
        value = getattr(replica, name)
        if name == "__version__":
            continue
        assert inspect.getdoc(value), f"replica.{name} has no docstring"
