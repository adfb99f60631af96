"""Shape definitions of the three Trigger.dev run feeds: URLs, params, headers, validation."""

from __future__ import annotations

import pytest

from replica import __version__
from replica.errors import ShapeDefinitionError
from replica.sources import (
    ELECTRIC_VERSION,
    SKIPPABLE_COLUMNS,
    TRIGGER_API_VERSION,
    TriggerConfig,
    batch_shape,
    run_shape,
    tag_shape,
)
from replica.sources.trigger import native_window_start

TOKEN = "tr_dev_s3cretT0ken"
CONFIG = TriggerConfig(TOKEN)


def test_config_defaults_and_headers() -> None:
    assert CONFIG.api_url == "https://api.trigger.dev"
    assert CONFIG.branch is None
    assert dict(CONFIG.headers()) == {
        "Authorization": f"Bearer {TOKEN}",
        "x-trigger-electric-version": ELECTRIC_VERSION,
        "x-trigger-api-version": TRIGGER_API_VERSION,
        "user-agent": f"replica/{__version__}",
    }
    assert TRIGGER_API_VERSION == "2025-07-16"
    assert ELECTRIC_VERSION == "1.0.0-beta.1"


def test_branch_header_and_trailing_slash() -> None:
    config = TriggerConfig(TOKEN, api_url="http://localhost:3030/", branch="feature-x")
    assert config.api_url == "http://localhost:3030"
    assert config.headers()["x-trigger-branch"] == "feature-x"
    assert run_shape(config, "run_abc").url == "http://localhost:3030/realtime/v1/runs/run_abc"


def test_api_url_may_have_a_path_prefix() -> None:
    config = TriggerConfig(TOKEN, api_url="https://example.com/trigger/")
    assert (
        batch_shape(config, "batch_1").url
        == "https://example.com/trigger/realtime/v1/batches/batch_1"
    )


def test_token_never_in_repr() -> None:
    config = TriggerConfig(TOKEN, branch="b")
    shape = tag_shape(config, ["user:1"])
    for text in (
        repr(config),
        str(config),
        repr(shape),
        repr(shape.headers),
        repr(config.headers()),
    ):
        assert TOKEN not in text
    assert "Authorization" in repr(shape)  # named, never shown
    # ... while the request itself carries it.
    assert shape.headers["Authorization"] == f"Bearer {TOKEN}"


def test_run_shape() -> None:
    shape = run_shape(CONFIG, "run_cmek7q1xv0003l50ahz2b9r4d")
    assert shape.url == "https://api.trigger.dev/realtime/v1/runs/run_cmek7q1xv0003l50ahz2b9r4d"
    assert shape.query_params() == {}
    assert shape.table is None
    assert shape.headers["x-trigger-api-version"] == TRIGGER_API_VERSION


def test_run_shape_with_skip_columns_sorted_and_deduplicated() -> None:
    shape = run_shape(CONFIG, "run_x1", skip_columns=["payload", "output", "payload"])
    assert shape.query_params() == {"skipColumns": "output,payload"}


def test_batch_shape() -> None:
    shape = batch_shape(CONFIG, "batch_cmek7x0pq0001", skip_columns=["metadata"])
    assert shape.url == "https://api.trigger.dev/realtime/v1/batches/batch_cmek7x0pq0001"
    assert shape.query_params() == {"skipColumns": "metadata"}


def test_tag_shape_params_are_sorted() -> None:
    shape = tag_shape(
        CONFIG,
        ["user:user_42", "file:q3 sales.csv", "user:user_42"],
        created_at="1h30m",
        skip_columns=["payloadType", "payload", "error"],
    )
    assert shape.url == "https://api.trigger.dev/realtime/v1/runs"
    params = shape.query_params()
    assert list(params) == ["createdAt", "skipColumns", "tags"]
    assert params == {
        "createdAt": "1h30m",
        "skipColumns": "error,payload,payloadType",
        "tags": "file:q3 sales.csv,user:user_42",
    }


def test_tag_order_does_not_make_another_shape() -> None:
    assert tag_shape(CONFIG, ["b", "a"]).key == tag_shape(CONFIG, ["a", "b"]).key
    assert tag_shape(CONFIG, ["a"]).key != tag_shape(CONFIG, ["a"], created_at="1h").key


def test_a_single_string_is_one_tag() -> None:
    assert tag_shape(CONFIG, "user:42").query_params() == {"tags": "user:42"}


def test_tag_with_colons_and_spaces_and_128_chars() -> None:
    tag = "x" * 128
    assert tag_shape(CONFIG, [tag, "a b:c"]).query_params()["tags"] == f"a b:c,{tag}"


@pytest.mark.parametrize("duration", ["30m", "1h", "2d", "1w", "1h30m", "1hr", "1w2d3h4m5s", "90s"])
def test_durations_accepted(duration: str) -> None:
    assert tag_shape(CONFIG, ["t"], created_at=duration).query_params()["createdAt"] == duration


def test_every_skippable_column_is_accepted() -> None:
    shape = run_shape(CONFIG, "run_a", skip_columns=sorted(SKIPPABLE_COLUMNS))
    assert shape.query_params()["skipColumns"].split(",") == sorted(SKIPPABLE_COLUMNS)
    assert len(SKIPPABLE_COLUMNS) == 18


def test_path_segments_are_encoded() -> None:
    # Only [A-Za-z0-9] pass validation, so nothing needs escaping; the helper still encodes.
    assert run_shape(CONFIG, "run_AZaz09").url.endswith("/realtime/v1/runs/run_AZaz09")


# -- validation ----------------------------------------------------------------------------


def _error(call) -> ShapeDefinitionError:
    with pytest.raises(ShapeDefinitionError) as info:
        call()
    return info.value


@pytest.mark.parametrize(
    "run_id", ["cmek7q1xv0003l50ahz2b9r4d", "", "run_", "run_a/b", "batch_x", " run_a", None, 5]
)
def test_bad_run_ids(run_id: object) -> None:
    err = _error(lambda: run_shape(CONFIG, run_id))  # type: ignore[arg-type]
    assert repr(run_id) in str(err)
    assert "run_cmek7q1xv0003l50ahz2b9r4d" in str(err)  # what is expected
    assert "internal" in err.hint


@pytest.mark.parametrize("batch_id", ["run_abc", "batch_", "cmek", "batch_a b", None])
def test_bad_batch_ids(batch_id: object) -> None:
    err = _error(lambda: batch_shape(CONFIG, batch_id))  # type: ignore[arg-type]
    assert repr(batch_id) in str(err)
    assert "batch_" in str(err)


@pytest.mark.parametrize(
    ("tags", "words"),
    [
        ([], "at least one tag"),
        ([""], "cannot be empty"),
        (["x" * 129], "129 characters"),
        (["a\x00b"], "refuses"),
        (["a\x1fb"], "refuses"),
        (["a\x7fb"], "refuses"),
        (["a\\b"], "refuses"),
        (['a"b'], "refuses"),
        (["a,b"], "comma"),
        ([5], "must be strings"),
    ],
)
def test_bad_tags(tags: list[object], words: str) -> None:
    assert words in str(_error(lambda: tag_shape(CONFIG, tags)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("duration", "words"),
    [
        ("", "duration like"),
        ("1x", "duration like"),
        ("h", "duration like"),
        ("1 h", "duration like"),
        ("-1h", "duration like"),
        ("1" * 100 + "h", "duration like"),
        ("1h1h", "repeats a unit"),
        ("1h2hr", "repeats a unit"),
    ],
)
def test_bad_created_at(duration: str, words: str) -> None:
    assert words in str(_error(lambda: tag_shape(CONFIG, ["t"], created_at=duration)))


def test_updated_at_cannot_be_skipped_and_why() -> None:
    err = _error(lambda: run_shape(CONFIG, "run_a", skip_columns=["updatedAt"]))
    assert "'updatedAt' cannot be skipped" in str(err)
    assert "newest" in err.hint


@pytest.mark.parametrize("column", ["id", "status", "friendlyId", "taskIdentifier", "createdAt"])
def test_never_skipped_columns(column: str) -> None:
    assert "always sends it" in str(_error(lambda: tag_shape(CONFIG, ["t"], skip_columns=[column])))


@pytest.mark.parametrize("column", ["metadataType", "realtimeStreams", "nope", ""])
def test_unknown_skip_columns(column: str) -> None:
    err = _error(lambda: batch_shape(CONFIG, "batch_a", skip_columns=[column]))
    assert "cannot be skipped" in str(err) or "not a column" in str(err)
    assert "payloadType" in err.hint  # lists what can be skipped


@pytest.mark.parametrize(("data", "kind"), [("payload", "payloadType"), ("output", "outputType")])
def test_skipping_a_type_without_its_packet(data: str, kind: str) -> None:
    err = _error(lambda: run_shape(CONFIG, "run_a", skip_columns=[kind]))
    assert "undecodable" in str(err)
    run_shape(CONFIG, "run_a", skip_columns=[kind, data])  # both is fine
    run_shape(CONFIG, "run_a", skip_columns=[data])  # the packet alone too


@pytest.mark.parametrize(
    "api_url",
    ["ftp://api.trigger.dev", "api.trigger.dev", "https://x?y=1", "https://x#f", "", None],
)
def test_bad_api_urls(api_url: object) -> None:
    assert "http(s) URL" in str(_error(lambda: TriggerConfig(TOKEN, api_url=api_url)))  # type: ignore[arg-type]


@pytest.mark.parametrize("token", ["", "   ", "tr_dev_zq\n", "tr_dev\nzq", " tr_dev_zq"])
def test_bad_tokens(token: str) -> None:
    err = _error(lambda: TriggerConfig(token))
    assert "token" in str(err)
    assert "zq" not in str(err)  # the token is not echoed


@pytest.mark.parametrize("branch", ["", " ", "a\nb"])
def test_bad_branch(branch: str) -> None:
    assert "branch" in str(_error(lambda: TriggerConfig(TOKEN, branch=branch)))


def test_config_must_be_a_trigger_config() -> None:
    assert "TriggerConfig" in str(_error(lambda: run_shape("tok", "run_a")))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (["started_at", "startedAt"], "startedAt"),
        (["finished_at"], "completedAt"),
        (["duration_ms", "cost_in_cents"], "costInCents,usageDurationMs"),
        (["tags", "delayed_until"], "delayUntil,runTags"),
        (["payload", "payload_type"], "payload,payloadType"),
    ],
)
def test_skip_columns_may_be_named_as_the_runs_table_names_them(
    given: list[str], sent: str
) -> None:
    assert run_shape(CONFIG, "run_x1", skip_columns=given).params["skipColumns"] == sent


def test_updated_at_cannot_be_skipped_by_either_name() -> None:
    err = _error(lambda: run_shape(CONFIG, "run_x1", skip_columns=["updated_at"]))
    assert "updatedAt" in err.message and "newest" in err.hint


@pytest.mark.parametrize("window", ["0s", "0m", "0h0m"])
def test_a_zero_window_means_runs_created_from_now_on(window: str) -> None:
    shape = tag_shape(CONFIG, ["a"], created_at=window)
    assert shape.params["createdAt"] == window


def test_a_native_tag_window_moves_and_an_electric_one_does_not() -> None:
    day = 24 * 3600.0
    made = 1_000_000.0  # when the handle was made
    handle = f"runs_{int((made - day) * 1000)}_1_abcd1234"
    # Asked for the default 24 h: the window starts a day before now, wherever now is.
    assert native_window_start(handle, made, day, made) == made - day
    assert native_window_start(handle, made, day, made + 3600) == made + 3600 - day
    # Asked for 1 h: pinned an hour back until the server's max age (24 h) catches up.
    short = f"runs_{int((made - 3600) * 1000)}_1_abcd1234"
    assert native_window_start(short, made, 3600, made + 3600) == made - 3600
    assert native_window_start(short, made, 3600, made + 2 * day) == made + day
    # Asked for a week, given a day: the server's cap is a day.
    assert native_window_start(handle, made, 7 * day, made + 10) == made + 10 - day
    # Electric-backend handles pin nothing that moves.
    assert native_window_start("48213377-1755681243512", made, day, made + 2 * day) is None
