"""Type checkers infer and narrow reads with a model per task as the docs say: mypy checks
tests/api/typing_sample.py (`assert_type` on each read) and examples/typed_payloads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_mypy_infers_the_union_and_narrows_it_on_task_identifier(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            # Errors in these two files only, not in the modules they import.
            "--follow-imports=silent",
            "--cache-dir",
            str(tmp_path / "mypy"),
            "tests/api/typing_sample.py",
            "examples/typed_payloads/typed_runs.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
