"""`replica query`'s output flags (sqlite-utils' own: --csv, --tsv, --nl, --json-cols, --fmt)
on a small replica with known runs: NULLs, non-ASCII text, JSON columns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlite_utils.cli import maybe_json as sqlite_utils_maybe_json

from replica.commands.query import maybe_json
from tests.cli.conftest import one_error_line
from tests.notify.helpers import run
from tests.support.replicas import replica_with

SQL = "select id, task_identifier, status, payload, tags, number, cost_in_cents from runs"


@pytest.fixture(scope="module")
def replica_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A replica written through the store, as `replica sync` writes it."""
    return replica_with(
        tmp_path_factory.mktemp("query") / "replica.db",
        run(
            1,
            task_identifier="send-email",
            status="COMPLETED",
            payload='{"to": "ada@example.com"}',
            tags='["user:1","org:é"]',
            number=1,
            cost_in_cents=1.5,
        ),
        run(
            2,
            task_identifier="résumé ✓",
            status="FAILED",
            payload=None,
            tags="[]",
            number=2,
            cost_in_cents=None,
        ),
        run(
            3,
            task_identifier='say "hi", then go',
            status="QUEUED",
            payload='"just text"',  # a JSON string: not an object or array
            tags='["a"]',
            number=None,
            cost_in_cents=0.1,
        ),
    )


def query(db: Path, sql: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replica", "query", sql, "--db", str(db), *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )


def output(db: Path, sql: str, *flags: str) -> str:
    result = query(db, sql, *flags)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_default_is_a_plain_table(replica_db: Path) -> None:
    assert output(replica_db, SQL) == (
        "id     task_identifier    status     payload                    tags                "
        "number  cost_in_cents\n"
        "-----  -----------------  ---------  -------------------------  ------------------  "
        "------  -------------\n"
        'run_1  send-email         COMPLETED  {"to": "ada@example.com"}  ["user:1","org:é"]  '
        "1       1.5\n"
        "run_2  résumé ✓           FAILED                                []                  2\n"
        'run_3  say "hi", then go  QUEUED     "just text"                ["a"]                '
        "       0.1\n"
    )


def test_json_keeps_json_columns_as_text(replica_db: Path) -> None:
    text = output(replica_db, SQL, "--json")
    assert "résumé ✓" in text  # not \u-escaped
    assert json.loads(text) == [
        {
            "id": "run_1",
            "task_identifier": "send-email",
            "status": "COMPLETED",
            "payload": '{"to": "ada@example.com"}',
            "tags": '["user:1","org:é"]',
            "number": 1,
            "cost_in_cents": 1.5,
        },
        {
            "id": "run_2",
            "task_identifier": "résumé ✓",
            "status": "FAILED",
            "payload": None,
            "tags": "[]",
            "number": 2,
            "cost_in_cents": None,
        },
        {
            "id": "run_3",
            "task_identifier": 'say "hi", then go',
            "status": "QUEUED",
            "payload": '"just text"',
            "tags": '["a"]',
            "number": None,
            "cost_in_cents": 0.1,
        },
    ]


def test_json_cols_decodes_objects_and_arrays(replica_db: Path) -> None:
    rows = json.loads(output(replica_db, SQL, "--json", "--json-cols"))
    assert [(r["payload"], r["tags"]) for r in rows] == [
        ({"to": "ada@example.com"}, ["user:1", "org:é"]),
        (None, []),
        ('"just text"', ["a"]),  # a JSON string stays text, as in sqlite-utils
    ]
    assert [r["task_identifier"] for r in rows] == ["send-email", "résumé ✓", 'say "hi", then go']


def test_nl_prints_one_object_per_line(replica_db: Path) -> None:
    assert output(replica_db, SQL, "--nl").splitlines() == [
        '{"id": "run_1", "task_identifier": "send-email", "status": "COMPLETED", '
        '"payload": "{\\"to\\": \\"ada@example.com\\"}", "tags": "[\\"user:1\\",\\"org:é\\"]", '
        '"number": 1, "cost_in_cents": 1.5}',
        '{"id": "run_2", "task_identifier": "résumé ✓", "status": "FAILED", "payload": null, '
        '"tags": "[]", "number": 2, "cost_in_cents": null}',
        '{"id": "run_3", "task_identifier": "say \\"hi\\", then go", "status": "QUEUED", '
        '"payload": "\\"just text\\"", "tags": "[\\"a\\"]", "number": null, '
        '"cost_in_cents": 0.1}',
    ]


def test_nl_with_json_cols(replica_db: Path) -> None:
    assert output(replica_db, "select id, payload, tags from runs", "--nl", "--json-cols") == (
        '{"id": "run_1", "payload": {"to": "ada@example.com"}, "tags": ["user:1", "org:é"]}\n'
        '{"id": "run_2", "payload": null, "tags": []}\n'
        '{"id": "run_3", "payload": "\\"just text\\"", "tags": ["a"]}\n'
    )


def test_csv_and_tsv(replica_db: Path) -> None:
    assert output(replica_db, SQL, "--csv") == (
        "id,task_identifier,status,payload,tags,number,cost_in_cents\n"
        'run_1,send-email,COMPLETED,"{""to"": ""ada@example.com""}","[""user:1"",""org:é""]",'
        "1,1.5\n"
        "run_2,résumé ✓,FAILED,,[],2,\n"
        'run_3,"say ""hi"", then go",QUEUED,"""just text""","[""a""]",,0.1\n'
    )
    assert output(replica_db, SQL, "--tsv") == (
        "id\ttask_identifier\tstatus\tpayload\ttags\tnumber\tcost_in_cents\n"
        'run_1\tsend-email\tCOMPLETED\t"{""to"": ""ada@example.com""}"\t'
        '"[""user:1"",""org:é""]"\t1\t1.5\n'
        "run_2\trésumé ✓\tFAILED\t\t[]\t2\t\n"
        'run_3\t"say ""hi"", then go"\tQUEUED\t"""just text"""\t"[""a""]"\t\t0.1\n'
    )
    tab = output(replica_db, "select 'a' || char(9) || 'b' as t, 'c,d' as u", "--tsv")
    assert tab == 't\tu\n"a\tb"\tc,d\n'


def test_fmt_draws_tabulate_styles(replica_db: Path) -> None:
    assert output(replica_db, "select id, status, number from runs", "--fmt", "github") == (
        "| id    | status    |   number |\n"
        "|-------|-----------|----------|\n"
        "| run_1 | COMPLETED |        1 |\n"
        "| run_2 | FAILED    |        2 |\n"
        "| run_3 | QUEUED    |          |\n"
    )
    assert output(replica_db, "select id, number from runs where number = 2", "--fmt", "psql") == (
        "+-------+----------+\n"
        "| id    |   number |\n"
        "|-------+----------|\n"
        "| run_2 |        2 |\n"
        "+-------+----------+\n"
    )


def test_fmt_prints_text_and_floats_as_stored(replica_db: Path) -> None:
    # tabulate on its own would print 7 and 1.23457e+06 (sqlite-utils --fmt does).
    sql = "select '007' as code, 1234567.891 as x"
    assert output(replica_db, sql, "--fmt", "plain") == "code              x\n007     1234567.891\n"


def test_blobs_are_hex_and_null_is_empty_or_null(replica_db: Path) -> None:
    sql = "select x'00ff' as b, null as n"
    assert output(replica_db, sql, "--csv") == "b,n\n00ff,\n"
    assert output(replica_db, sql, "--nl") == '{"b": "00ff", "n": null}\n'
    assert json.loads(output(replica_db, sql, "--json")) == [{"b": "00ff", "n": None}]
    assert output(replica_db, sql).splitlines()[2].rstrip() == "00ff"


def test_an_empty_result(replica_db: Path) -> None:
    sql = "select id, status from runs where 0"
    assert output(replica_db, sql, "--nl") == ""
    assert output(replica_db, sql, "--csv") == "id,status\n"
    assert json.loads(output(replica_db, sql, "--json")) == []


@pytest.mark.parametrize(
    "value",
    [
        '{"a": 1}',
        "  [1, 2] ",
        "[]",
        "{not json",
        '"a string"',
        "42",
        "",
        "plain",
        None,
        7,
        1.5,
        '[{"nested": ["é"]}]',
    ],
)
def test_json_cols_follows_sqlite_utils_rule(value: object) -> None:
    assert maybe_json(value) == sqlite_utils_maybe_json(value)


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (("--json", "--csv"), "--json and --csv"),
        (("--csv", "--tsv"), "--csv and --tsv"),
        (("--nl", "--json"), "--json and --nl"),
        (("--tsv", "--fmt", "github"), "--tsv and --fmt"),
        (("--json-cols",), "--json-cols"),
        (("--csv", "--json-cols"), "--json-cols"),
        (("--fmt", "github", "--json-cols"), "--json-cols"),
        (("--fmt", "fancy"), "'fancy' is not a table style"),
    ],
)
def test_conflicting_or_unknown_flags_are_usage_errors(
    replica_db: Path, flags: tuple[str, ...], needle: str
) -> None:
    result = query(replica_db, SQL, *flags)
    assert result.returncode == 2, result.stderr
    assert needle in one_error_line(result)
    assert result.stdout == ""


@pytest.mark.parametrize("flags", [(), ("--nl",), ("--csv",), ("--fmt", "github")])
def test_writes_are_refused_whatever_the_format(replica_db: Path, flags: tuple[str, ...]) -> None:
    result = query(replica_db, "delete from runs", *flags)
    assert result.returncode == 1
    assert "read-only" in one_error_line(result)
    assert output(replica_db, "select count(*) as n from runs", "--csv") == "n\n3\n"


def test_describing_pragmas_are_read_setting_one_is_refused(replica_db: Path) -> None:
    columns = output(replica_db, "select name from pragma_table_info('runs')", "--csv")
    assert output(replica_db, "pragma table_info(runs)", "--csv").count("\n") == columns.count("\n")
    refused = query(replica_db, "pragma query_only = 0")
    assert refused.returncode == 1
    assert "refused" in one_error_line(refused)


@pytest.mark.parametrize(
    ("flags", "loaded"),
    [((), set()), (("--nl", "--json-cols"), set()), (("--fmt", "grid"), {"tabulate"})],
)
def test_heavy_imports_wait_for_the_flag_that_needs_them(
    replica_db: Path, flags: tuple[str, ...], loaded: set[str]
) -> None:
    # Start-up time: neither tabulate nor sqlite-utils loads for a plain query.
    script = (
        "import sys\n"
        "from replica.cli import cli\n"
        f"cli.main(['query', 'select 1', '--db', {str(replica_db)!r}, *{list(flags)!r}])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'tabulate', 'sqlite_utils'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == repr(sorted(loaded))


def test_named_parameters_as_sqlite_utils_takes_them(replica_db: Path) -> None:
    sql = "select id from runs where status = :status or task_identifier = :task order by id"
    found = output(replica_db, sql, "-p", "status", "FAILED", "--param", "task", "send-email")
    assert (
        json.loads(output(replica_db, sql, "--json", "-p", "status", "x", "-p", "task", "y")) == []
    )
    assert found.split()[2:] == ["run_1", "run_2"]
    missing = query(replica_db, sql, "-p", "status", "FAILED")
    assert missing.returncode == 1
    assert "-p NAME VALUE" in missing.stderr and "Traceback" not in missing.stderr


def test_schema_can_be_inspected_read_only(replica_db: Path) -> None:
    assert "task_identifier" in output(replica_db, "pragma table_info(runs)")
    assert "task_identifier" in output(replica_db, "select name from pragma_table_info('runs')")
    assert "runs" in output(replica_db, "select name from sqlite_master where type = 'table'")
    refused = query(replica_db, "pragma journal_mode = delete")
    assert refused.returncode == 1 and "refused" in refused.stderr
