"""Errors give their own advice, worded for the interface in use."""

from __future__ import annotations

import pytest

import replica.settings  # noqa: F401 - defines an error of its own
from replica import errors
from replica.errors import ReplicaError


def subclasses(cls: type[ReplicaError]) -> list[type[ReplicaError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *subclasses(sub)]
    return found


@pytest.mark.parametrize("speaks_cli", [False, True])
def test_a_class_with_advice_of_its_own_gives_it_in_both_interfaces(
    monkeypatch: pytest.MonkeyPatch, speaks_cli: bool
) -> None:
    monkeypatch.setattr(errors, "speaks_cli", speaks_cli)
    own = [cls for cls in subclasses(ReplicaError) if "hint" in vars(cls)]
    assert errors.QueryRefusedError in own and errors.ApplyError in own
    for cls in own:
        cli = vars(cls).get("cli_hint")
        expected = cli if speaks_cli and cli else vars(cls)["hint"]
        assert cls("it failed").advice == expected, cls.__name__
        assert str(cls("it failed")) == f"it failed ({expected})"


def test_advice_given_when_raised_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(errors, "speaks_cli", True)
    error = errors.DatabaseError("no", hint="python advice", cli_hint="--db advice")
    assert error.advice == "--db advice"
    assert errors.DatabaseError("no", hint="python advice").advice == "python advice"
