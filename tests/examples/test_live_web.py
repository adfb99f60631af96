"""examples/live_web: the page lists a tag's runs, `/events` pushes each change as it
happens (fed by a callback), and the page reflects it on the next load."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import httpx

from replica.devserver import DevServer
from tests.support.env import replica_env
from tests.support.waiting import PATIENCE, wait_for

from .helpers import EXAMPLES, Process, free_port, python

APP = EXAMPLES / "live_web" / "app.py"


def test_page_lists_the_tag_and_events_follow_changes(
    tmp_path: Path, server: DevServer, processes: Callable[..., Process]
) -> None:
    tag = "user:web"
    first = server.trigger("send-email", {"to": "a@example.com"}, tags=[tag])
    second = server.trigger("import-csv", {"file": "x.csv"}, tags=[tag])
    other = server.trigger("send-email", {}, tags=["user:elsewhere"])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = processes(
        python(APP, "--sync", "--tag", tag, "--port", str(port), "--duration", "60"),
        env=replica_env(server, tmp_path / "replica.db"),
        cwd=tmp_path,
    )
    app.wait_for_line(lambda line: line.startswith("live page for tag"))
    listed = wait_for(
        lambda: len(runs := httpx.get(f"{base}/runs.json").json()) == 2 and runs,
        what="the sync to bring both runs",
    )
    assert {run["id"] for run in listed} == {first, second}
    assert all(run["status"] == "QUEUED" for run in listed)

    page = httpx.get(f"{base}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert f'<tr id="{first}" class="QUEUED">' in page.text
    assert "import-csv" in page.text and other not in page.text
    assert 'new EventSource("events")' in page.text

    seen: list[dict[str, object]] = []
    with httpx.stream("GET", f"{base}/events", timeout=PATIENCE) as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        third = ""
        for line in events.iter_lines():
            if line == ": connected":  # subscribed: now change things upstream
                server.start_run(first)
                server.set_metadata(first, {"progress": 0.5})
                third = server.trigger("render-video", "clip", tags=[tag], payloadType="text/plain")
                server.fail_run(second, {"type": "STRING_ERROR", "raw": "bad csv"})
                server.trigger("send-email", {}, tags=["user:elsewhere"])  # not this page's
            elif line.startswith("data: "):
                seen.append(json.loads(line.removeprefix("data: ")))
                if any(event["id"] == second and event["status"] == "FAILED" for event in seen):
                    break
    assert (first, "EXECUTING", "50%") in {(e["id"], e["status"], e["progress"]) for e in seen}
    assert (third, "QUEUED") in {(e["id"], e["status"]) for e in seen}
    assert {e["id"] for e in seen} <= {first, second, third}

    page = httpx.get(f"{base}/").text
    assert f'<tr id="{second}" class="FAILED">' in page
    assert f'<tr id="{third}" class="QUEUED">' in page
    # SIGTERM with a page still open: its event stream ends, the app shuts down cleanly
    # (uvicorn then re-raises the signal: that is its exit status).
    with httpx.stream("GET", f"{base}/events", timeout=PATIENCE) as events:
        lines = events.iter_lines()
        assert next(lines) == ": connected"
        app.proc.send_signal(signal.SIGTERM)
        assert [line for line in lines if line] == []  # ended, not cut off
    assert app.stop() in (0, -signal.SIGTERM)
    assert app.lines[-1] == "stopped"
    assert "Traceback" not in app.stderr
