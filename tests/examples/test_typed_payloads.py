"""examples/typed_payloads: sync once in-process, read a tag's `send-email` and
`generate-report` runs each with its task's model (`model=EmailRun | ReportRun`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from replica.devserver import DevServer
from tests.support.env import replica_env

from .helpers import EXAMPLES, python

EXAMPLE = EXAMPLES / "typed_payloads" / "typed_runs.py"


def run_example(tmp_path: Path, server: DevServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        python(EXAMPLE, *args),
        cwd=tmp_path,
        env=replica_env(server, tmp_path / "replica.db"),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_each_run_is_validated_by_the_model_of_its_task(tmp_path: Path, server: DevServer) -> None:
    tag = "user:typed"
    sent = server.trigger("send-email", {"to": "a@example.com"}, tags=[tag])
    server.start_run(sent)
    server.complete_run(sent, {"ok": True, "items": 3})
    bounced = server.trigger("send-email", {"to": "b@example.com", "template": "reset"}, tags=[tag])
    server.fail_run(bounced, {"type": "BUILT_IN_ERROR", "name": "Error", "message": "bounced"})
    queued = server.trigger("send-email", {"to": "c@example.com"}, tags=[tag])
    # As the SDK sends it: superjson, with a Date.
    report_payload = {
        "json": {"reportId": "rep_7", "format": "csv", "requestedAt": "2026-03-04T09:14:03.401Z"},
        "meta": {"values": {"requestedAt": ["Date"]}},
    }
    report = server.trigger(
        "generate-report",
        json.dumps(report_payload),
        tags=[tag],
        payloadType="application/super+json",
    )
    server.start_run(report)
    server.complete_run(report, {"url": "https://files.example.com/r.pdf", "pages": 12})
    # A task without a model, whose payload neither model would accept: left out.
    server.trigger("render-video", "clip.mp4", tags=[tag], payloadType="text/plain")

    result = run_example(tmp_path, server, "--tag", tag)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sorted(lines[:-1]) == sorted(
        [
            f"{sent} send-email to=a@example.com template=welcome status=COMPLETED items=3",
            f"{bounced} send-email to=b@example.com template=reset status=FAILED error='bounced'",
            f"{queued} send-email to=c@example.com template=welcome status=QUEUED",
            f"{report} generate-report rep_7 as csv status=COMPLETED pages=12",
        ]
    )
    assert lines[-1] == f"4 typed runs tagged {tag}, 3 completed"


def test_strict_refuses_a_run_of_a_task_without_a_model(tmp_path: Path, server: DevServer) -> None:
    tag = "user:typed-strict"
    server.trigger("send-email", {"to": "a@example.com"}, tags=[tag])
    video = server.trigger("render-video", "clip.mp4", tags=[tag], payloadType="text/plain")
    result = run_example(tmp_path, server, "--tag", tag, "--strict")
    assert result.returncode == 1
    assert f"refused: run {video} is of task 'render-video'" in result.stdout


def test_a_payload_that_does_not_match_is_reported(tmp_path: Path, server: DevServer) -> None:
    tag = "user:typed-bad"
    bad = server.trigger("send-email", {"recipient": "a@example.com"}, tags=[tag])
    result = run_example(tmp_path, server, "--tag", tag)
    assert result.returncode == 1
    assert "does not match the model of its task" in result.stdout
    assert f"EmailRun of run {bad}" in result.stdout
    assert "to\n  Field required" in result.stdout
