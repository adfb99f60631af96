"""examples/typed_payloads: sync once in-process, read `send-email` runs as pydantic models."""

from __future__ import annotations

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


def test_payloads_and_outputs_are_validated_into_models(tmp_path: Path, server: DevServer) -> None:
    tag = "user:typed"
    sent = server.trigger("send-email", {"to": "a@example.com"}, tags=[tag])
    server.start_run(sent)
    server.complete_run(sent, {"ok": True, "items": 3})
    bounced = server.trigger("send-email", {"to": "b@example.com", "template": "reset"}, tags=[tag])
    server.fail_run(bounced, {"type": "BUILT_IN_ERROR", "name": "Error", "message": "bounced"})
    queued = server.trigger("send-email", {"to": "c@example.com"}, tags=[tag])
    # Another task with a payload EmailPayload would reject: the task filter leaves it out.
    server.trigger("render-video", "clip.mp4", tags=[tag], payloadType="text/plain")

    result = run_example(tmp_path, server, "--tag", tag)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sorted(lines[:-1]) == sorted(
        [
            f"{sent} to=a@example.com template=welcome status=COMPLETED items=3",
            f"{bounced} to=b@example.com template=reset status=FAILED error='bounced'",
            f"{queued} to=c@example.com template=welcome status=QUEUED",
        ]
    )
    assert lines[-1] == f"3 send-email runs tagged {tag}, 2 completed"


def test_a_payload_that_does_not_match_is_reported(tmp_path: Path, server: DevServer) -> None:
    tag = "user:typed-bad"
    server.trigger("send-email", {"recipient": "a@example.com"}, tags=[tag])
    result = run_example(tmp_path, server, "--tag", tag)
    assert result.returncode == 1
    assert "does not match EmailPayload" in result.stdout
    assert "to\n  Field required" in result.stdout
