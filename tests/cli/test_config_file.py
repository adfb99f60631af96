"""`replica.toml` entries become the same feed specs as the command line's options."""

from __future__ import annotations

from pathlib import Path

import pytest

from replica import config_file
from replica.sources.specs import BatchSpec, ElectricSpec, RunSpec, TagSpec


def _load(tmp_path: Path, text: str) -> config_file.Config:
    path = tmp_path / "replica.toml"
    path.write_text(text)
    return config_file.load(path)


def test_every_kind_of_entry(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        """
[[sync]]
tag = "user:1, org:2"
created_at = "0s"
skip_columns = ["started_at"]

[[sync]]
run = "run_abc"
stop_on_completion = false

[[sync]]
batch = "batch_xyz"

[[sync]]
electric = "http://localhost:3000"
table = "items"
where = "id > $1"
params = [10]
""",
    )
    assert config.feeds == (
        TagSpec(("org:2", "user:1"), created_at="0s", skip_columns=("startedAt",)),
        RunSpec("run_abc", stop_on_completion=False),
        BatchSpec("batch_xyz"),
        ElectricSpec("http://localhost:3000", "items", where="id > $1", params=("10",)),
    )
    assert config.needs_token


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[[sync]]\nrun = "run_abc"\nstop_on_completion = "no"', "true or false"),
        ('[[sync]]\ntag = "a"\nstop_on_completion = false', "applies to run entries"),
        ('[[sync]]\ntag = ""', "tag must be a non-empty string"),
        ("[[sync]]\ntags = []", "at least one tag"),
        ('[[sync]]\nrun = "not-a-run"', "#1: 'not-a-run' is not a run id"),
        ('[[sync]]\nelectric = "http://x"\ntable = "t"\nwhere = "id >"', "> needs a value"),
    ],
)
def test_bad_entries_say_where_and_what(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(config_file.ConfigError) as raised:
        _load(tmp_path, text)
    assert words in str(raised.value)
