"""The workload with offloaded packets, and the packet routes' own ceiling.

`PacketUpstream` holds completed runs (a payload and an output each) of which a share of the
payloads and outputs (9 % by default, chosen independently) are `application/store`: their
JSON is in the emulator's object store and the run holds its path, as Trigger.dev stores
packets above 512 KB. The objects are small (the size of the inline packets, ~1 KB), so what
is measured is the two round trips a packet costs (presign, then download), each answered
after the emulator's `packet_latency`.

`route_ceiling` fetches every offloaded packet of the workload with a plain concurrent httpx
loop in another process (`python -m benchmarks.packets`, so that it does not share the
emulator's GIL): the rate the packet routes serve, beside which the contenders' are read.

`measure` runs replica, the TypeScript client (which downloads no packets: its rows keep the
store paths) and the SDK (which downloads them one run at a time) on one such workload, and
checks what each ended with.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sqlite3
import ssl
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from benchmarks import initial_sync
from benchmarks.initial_sync import Measured
from benchmarks.workload import TASKS, Download, Upstream, run_items

log = logging.getLogger(__name__)

#: Share of payloads and of outputs held in the object store.
OFFLOADED_SHARE = 0.09
ROOT = Path(__file__).resolve().parent.parent


class PacketUpstream(Upstream):
    """An emulator holding `rows` completed runs tagged `bench`, `offloaded` of whose
    payloads and outputs are in the object store; download routes answer after `latency`."""

    def __init__(
        self, rows: int, *, offloaded: float = OFFLOADED_SHARE, latency: float = 0.0
    ) -> None:
        super().__init__(rows, packet_latency=latency)
        self.offloaded = offloaded
        self.latency = latency
        #: (friendly run id, "payload" | "output") of every offloaded packet.
        self.packets: list[tuple[str, str]] = []

    def load(self) -> None:
        emu = self.server.emulator
        rng = random.Random(11)
        ops: list[Any] = []
        for item in run_items(self.rows):
            values = emu.runs.build_run(str(item["task"]), item["payload"], item["options"])
            output = {
                "ok": True,
                "task": rng.choice(TASKS),
                "processed": rng.randrange(10_000),
                "durations": [rng.randrange(1000) for _ in range(20)],
            }
            values.update(
                status="COMPLETED_SUCCESSFULLY",
                startedAt=values["createdAt"],
                completedAt=values["createdAt"],
                output=orjson.dumps(output).decode(),
                outputType="application/json",
                usageDurationMs="1520",
                costInCents="0.0122",
                attemptNumber="1",
            )
            for field in ("payload", "output"):
                if rng.random() < self.offloaded:
                    path = f"{values['friendlyId']}/{field}.json"
                    emu.objects.put(path, values[field].encode(), values[f"{field}Type"])
                    values[field], values[f"{field}Type"] = path, "application/store"
                    self.packets.append((str(values["friendlyId"]), field))
            ops.append(("insert", emu.runs.table, {}, values))
            if len(ops) >= 5000:
                emu.db.commit(ops)
                ops = []
        emu.db.commit(ops)


@dataclass
class PacketResult:
    """Every contender on one packets workload, measured in the same run."""

    rows: int
    offloaded: float
    latency: float
    packets: int
    download: Download
    replica: Measured
    node: Measured | None
    sdk: Measured | None
    #: Packets the TypeScript client's rows hold as store paths (it fetches none).
    node_unfetched: int | None
    ceilings: list[RouteCeiling]


def measure(
    rows: int,
    work: Path,
    *,
    offloaded: float,
    latency: float,
    node: bool,
    sdk: bool,
    concurrency: list[int],
) -> PacketResult:
    """The contenders on `rows` completed runs, `offloaded` of whose packets are offloaded,
    then the packet routes' ceiling at each `concurrency` (when there are packets)."""
    log.info(
        "packets: %d runs, %.0f %% offloaded, %.0f ms latency",
        rows,
        100 * offloaded,
        1000 * latency,
    )
    with PacketUpstream(rows, offloaded=offloaded, latency=latency) as upstream:
        upstream.download()  # renders the snapshot: every contender then reads it warm
        download = upstream.download()
        node_result = sdk_result = node_unfetched = None
        if node:
            node_result = initial_sync.node_client(upstream, work / "node.db")
            node_unfetched = _count(
                work / "node.db",
                """SELECT (SELECT count(*) FROM runs WHERE "payloadType" = 'application/store')
                 + (SELECT count(*) FROM runs WHERE "outputType" = 'application/store')""",
            )
            log.info("node client: %.2f s", node_result.seconds)
        if sdk:
            sdk_result = initial_sync.sdk_client(upstream, work / "sdk.db")
            # A packet the SDK did not fetch would be stored as its path, a JSON string.
            left = _count(
                work / "sdk.db",
                "SELECT count(*) FROM runs WHERE payload = json_quote(id || '/payload.json')"
                " OR output = json_quote(id || '/output.json')",
            )
            if left:
                raise RuntimeError(f"the SDK left {left} runs with a packet not downloaded")
            log.info("sdk: %.2f s", sdk_result.seconds)
        replica = initial_sync.replica_sync(upstream, work / "replica.db")
        left = _count(
            work / "replica.db",
            "SELECT count(*) FROM runs WHERE payload_ref IS NOT NULL OR output_ref IS NOT NULL",
        )
        if left:
            raise RuntimeError(f"replica left {left} runs with a packet not downloaded")
        log.info("replica sync: %.2f s", replica.seconds)
        ceilings = []
        if upstream.packets:
            for n in concurrency:
                ceilings.append(route_ceiling(upstream, n))
                log.info("packet routes, %d concurrent: %.0f/s", n, ceilings[-1].rate)
        initial_sync.discard(work, "node.db", "sdk.db", "replica.db")
    contenders = {"replica": replica, "the node client": node_result, "the SDK": sdk_result}
    initial_sync.expect_rows(rows, contenders)
    return PacketResult(
        rows=rows,
        offloaded=offloaded,
        latency=latency,
        packets=len(upstream.packets),
        download=download,
        replica=replica,
        node=node_result,
        sdk=sdk_result,
        node_unfetched=node_unfetched,
        ceilings=ceilings,
    )


def _count(db: Path, sql: str) -> int:
    with closing(sqlite3.connect(db)) as conn:
        return int(conn.execute(sql).fetchone()[0])


@dataclass
class RouteCeiling:
    """Every offloaded packet fetched (presign + download) with `concurrency` at once."""

    concurrency: int
    packets: int
    seconds: float
    #: CPU seconds the emulator (this process) spent meanwhile.
    server_cpu: float

    @property
    def rate(self) -> float:
        return self.packets / self.seconds if self.seconds else 0.0

    @property
    def server_ms_per_packet(self) -> float:
        return 1000 * self.server_cpu / self.packets if self.packets else 0.0


def route_ceiling(upstream: PacketUpstream, concurrency: int) -> RouteCeiling:
    """The packet routes' rate with a plain httpx loop in another process (see module doc)."""
    job = {
        "url": upstream.url,
        "token": upstream.token,
        "packets": upstream.packets,
        "concurrency": concurrency,
    }
    cpu = time.process_time()  # the emulator's threads: this thread only waits meanwhile
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.packets"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1800,
        check=False,
    )
    cpu = time.process_time() - cpu
    if proc.returncode != 0:
        raise RuntimeError(f"the packet route ceiling failed:\n{proc.stderr[-3000:]}")
    seconds = json.loads(proc.stdout)["seconds"]
    return RouteCeiling(concurrency, len(upstream.packets), seconds, cpu)


async def fetch_all(url: str, token: str, packets: list[list[str]], concurrency: int) -> float:
    """Seconds to presign and download every packet, `concurrency` at a time.

    Each of the `concurrency` workers has its own client and connection, made before the
    clock starts: one shared pool of 64 connections costs httpcore O(connections) per
    request (it checks every connection), which made the client, not the server, the limit.
    """
    headers = {"Authorization": f"Bearer {token}"}
    queue = list(reversed(packets))
    tls = ssl.create_default_context()  # plain http; one context instead of one per client
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(timeout=60, limits=limits, verify=tls) for _ in range(concurrency)]

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            run_id, field = queue.pop()
            presigned = await client.get(
                f"{url}/api/v1/runs/{run_id}/packets/{field}", headers=headers
            )
            presigned.raise_for_status()
            download = await client.get(presigned.json()["presignedUrl"])
            download.raise_for_status()

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for client in clients))
        return time.perf_counter() - started
    finally:
        for client in clients:
            await client.aclose()


def main() -> int:
    """The ceiling's child process: a JSON job on stdin, `{"seconds": s}` on stdout."""
    job = json.load(sys.stdin)
    seconds = asyncio.run(
        fetch_all(job["url"], job["token"], job["packets"], int(job["concurrency"]))
    )
    print(json.dumps({"seconds": seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
