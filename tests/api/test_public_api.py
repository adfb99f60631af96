"""The public face of the package: `replica.__all__` is complete, sorted and documented."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

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


def test_a_replica_in_a_missing_directory_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "x.db"
    with pytest.raises(replica.ReplicaError) as raised:
        replica.Replica(missing)
    message = str(raised.value)
    assert f"the directory {missing.parent} does not exist" in message
    assert "--db" not in message  # worded for Python, not for the command line
    assert not missing.parent.exists()


def test_python_errors_name_python_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TRIGGER_SECRET_KEY", "TRIGGER_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(replica.ReplicaError) as raised:
        replica.tag("user:1")
    assert "token=" in str(raised.value) and "--token-file" not in str(raised.value)
