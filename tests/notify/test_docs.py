"""docs/callbacks.md stays true: its Python examples compile and name real API."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import replica
from replica.api import Replica

DOC = Path(__file__).resolve().parents[2] / "docs" / "callbacks.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_examples_compile() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 5
    for block in blocks:
        compile(block, str(DOC), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_methods_named_in_the_docs_exist() -> None:
    text = DOC.read_text()
    for name in set(re.findall(r"\bdb\.(\w+)\(", text)):
        assert hasattr(Replica, name), name
    for name in set(re.findall(r"\breplica\.(\w+)\b", text)):
        if name not in {"db", "toml"}:
            assert hasattr(replica, name), name
