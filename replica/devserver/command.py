"""`replica dev-server`: serve the emulator from the command line."""

from __future__ import annotations

import logging
import sys

import click

from replica.devserver.config import (
    DAY,
    MIB,
    REALTIME_BACKENDS,
    DevServerConfig,
    RealtimeBackend,
    make_secret_key,
)

log = logging.getLogger(__name__)

FAULT_HELP = (
    "Inject a fault, KIND[:key=value,...] (repeatable). KIND is delay, error, 429, drop or "
    "stale; keys: path, live, every, probability, times, seconds, status, retry_after. "
    "E.g. 'error:status=503,retry_after=2,every=5' or 'delay:seconds=1,live=false'."
)


@click.command("dev-server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=3030,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0 picks a free one).",
)
@click.option(
    "--secret-key",
    metavar="KEY",
    help="Secret API key to accept (default: a new tr_dev_ key, printed at start).",
)
@click.option(
    "--simulate", is_flag=True, help="Trigger runs and walk them through realistic lives."
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Seed of the simulator (same seed, same runs).",
)
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Time compression of simulated lives.",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False),
    help="SQLite file holding the emulated tables (default: temporary, removed at exit).",
)
@click.option(
    "--long-poll-timeout",
    default=20.0,
    show_default=True,
    type=click.FloatRange(min=0.05),
    help="Seconds a live request is held.",
)
@click.option(
    "--chunk-bytes",
    default=10 * MIB,
    show_default=True,
    type=click.IntRange(min=1),
    help="Snapshot chunk size threshold.",
)
@click.option(
    "--concurrency-limit",
    default=100_000,
    show_default=True,
    type=click.IntRange(min=0),
    help="Concurrent live requests allowed on the realtime routes (then 429).",
)
@click.option(
    "--offload-threshold",
    default=512 * 1024,
    show_default=True,
    type=click.IntRange(min=0),
    help="Payloads larger than this go to the object store.",
)
@click.option(
    "--rotate-every",
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="Rotate every shape handle this often (clients get 409 must-refetch).",
)
@click.option(
    "--electric-secret",
    metavar="SECRET",
    help="Require ?secret= on /v1/shape, like Electric's ELECTRIC_SECRET.",
)
@click.option(
    "--realtime-backend",
    type=click.Choice(REALTIME_BACKENDS),
    default="electric",
    show_default=True,
    help="Serve the run feeds like Trigger.dev's Electric proxy or like its native backend.",
)
@click.option(
    "--handle-window-ttl",
    default=14 * DAY,
    show_default=True,
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Electric backend: how long a tag feed's handle keeps its createdAt window "
    "after its last use (then a request with it gets no window).",
)
@click.option(
    "--max-list-results",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Native backend: most runs a tag or batch feed holds.",
)
@click.option("--fault", "faults", multiple=True, metavar="SPEC", help=FAULT_HELP)
def dev_server(
    host: str,
    port: int,
    secret_key: str | None,
    simulate: bool,
    seed: int,
    speed: float,
    db_path: str | None,
    long_poll_timeout: float,
    chunk_bytes: int,
    concurrency_limit: int,
    offload_threshold: int,
    rotate_every: float | None,
    electric_secret: str | None,
    realtime_backend: RealtimeBackend,
    handle_window_ttl: float,
    max_list_results: int,
    faults: tuple[str, ...],
) -> None:
    """Run a local emulator of ElectricSQL and Trigger.dev Realtime.

    Serves Electric's GET /v1/shape, the Trigger.dev realtime feeds
    (/realtime/v1/runs, /realtime/v1/runs/{id}, /realtime/v1/batches/{id}), the write API
    (trigger, batch trigger, metadata, packets) and an admin API under /_replica/, so the
    official @electric-sql/client and @trigger.dev/sdk work against it unchanged.
    """
    # Imported here so `replica --help` stays fast.
    from replica.devserver.app import create_app
    from replica.devserver.emulator import Emulator
    from replica.devserver.faults import FaultSpecError, parse_fault_spec
    from replica.devserver.server import bind_socket, make_uvicorn, url_of

    try:
        rules = [parse_fault_spec(spec) for spec in faults]
    except FaultSpecError as exc:
        raise click.BadParameter(str(exc), param_hint="'--fault'") from None
    config = DevServerConfig(
        host=host,
        port=port,
        secret_key=secret_key or make_secret_key(),
        db_path=db_path,
        long_poll_timeout=long_poll_timeout,
        chunk_bytes=chunk_bytes,
        live_concurrency_limit=concurrency_limit,
        payload_offload_threshold=offload_threshold,
        electric_secret=electric_secret,
        simulate=simulate,
        seed=seed,
        speed=speed,
        rotate_every=rotate_every,
        realtime_backend=realtime_backend,
        handle_window_ttl=handle_window_ttl,
        native_max_list_results=max_list_results,
    )
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another --port)"
        ) from None
    emulator = Emulator(config)
    for rule in rules:
        emulator.faults.add(rule)
    url = url_of(sock)
    click.echo(f"replica dev-server listening on {url}")
    click.echo(f"  secret key: {config.secret_key}")
    click.echo(f"  export TRIGGER_API_URL={url} TRIGGER_SECRET_KEY={config.secret_key}")
    click.echo(f"  Electric:   {url}/v1/shape?table=...   admin: {url}/_replica/info")
    if realtime_backend != "electric":
        click.echo(f"  realtime feeds served like Trigger.dev's {realtime_backend} backend")
    if simulate:
        click.echo(f"  simulating runs (seed {seed}, speed {speed:g}x); follow tag user:1234")
    click.echo("  press Ctrl-C to stop")
    sys.stdout.flush()  # the URL and key must reach a piped reader before serving starts
    try:
        make_uvicorn(create_app(emulator), emulator).run(sockets=[sock])
    finally:
        sock.close()
        emulator.close()
