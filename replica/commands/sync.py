"""`replica sync`: follow Trigger.dev run feeds and Electric shapes into the replica."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx
from watchfiles import awatch

from replica import config_file, logs
from replica.commands.common import db_option, logging_options
from replica.commands.progress import Progress
from replica.config_file import DEFAULT_CONFIG
from replica.engine import Engine
from replica.errors import ReplicaError
from replica.notify.retention import parse_duration
from replica.protocol.client import HttpClient
from replica.settings import default_api_url, default_branch, electric_secret, trigger_token
from replica.sources.specs import (
    BatchSpec,
    ElectricSpec,
    FeedSpec,
    RunSpec,
    TagSpec,
    column_names,
    tag_names,
)
from replica.sources.subscriptions import Feed, sources_for, sync_clients
from replica.sources.trigger import TriggerConfig
from replica.store import Store

log = logging.getLogger(__name__)


class SyncFailedError(ReplicaError):
    """Some subscriptions could not be synced (their errors are logged and in status)."""

    hint = "see the errors above or run replica status"

    @classmethod
    def naming(cls, failed: dict[str, ReplicaError]) -> SyncFailedError:
        """The error for these failures (label -> error), naming the first one."""
        label, error = next(iter(failed.items()))
        if len(failed) == 1:
            return cls(f"{label} failed: {error}", hint="")
        return cls(f"{len(failed)} subscriptions failed; the first, {label}: {error}")


@click.command()
@db_option
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="TAG[,TAG...]",
    help="Follow runs with this tag; 'a,b' means runs with both. Repeatable: one "
    "subscription per option.",
)
@click.option("--run", "runs", multiple=True, metavar="RUN_ID", help="Follow one run. Repeatable.")
@click.option(
    "--batch",
    "batches",
    multiple=True,
    metavar="BATCH_ID",
    help="Follow the runs of a batch. Repeatable.",
)
@click.option(
    "--created-at",
    metavar="DURATION",
    help="Window of tag feeds, e.g. 1h, 2d (server default and cap: 24h; 0s: runs created "
    "from now on).",
)
@click.option(
    "--stop-on-completion/--no-stop-on-completion",
    default=True,
    show_default=True,
    help="Stop polling a --run 30 s after its run finished (as the SDK's subscribeToRun), "
    "freeing its realtime slot; status shows it complete.",
)
@click.option(
    "--skip-column",
    "skip_columns",
    multiple=True,
    metavar="COLUMN",
    help="A column the server should not send (e.g. payload), named as in runs (started_at) "
    "or as in TaskRun (startedAt). Repeatable.",
)
@click.option(
    "--api-url",
    default=default_api_url,
    show_default="TRIGGER_API_URL or https://api.trigger.dev",
    help="Trigger.dev API URL.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    metavar="PATH",
    help="Read the token from this file instead of TRIGGER_SECRET_KEY / TRIGGER_ACCESS_TOKEN.",
)
@click.option(
    "--branch",
    default=default_branch,
    show_default="TRIGGER_PREVIEW_BRANCH",
    help="Preview branch (sent as x-trigger-branch).",
)
@click.option(
    "--electric",
    "electric_url",
    metavar="URL",
    help="Follow a plain Electric shape from this server (needs --table). Query parameters "
    "in the URL (e.g. Electric Cloud's source_id) go with every request; its secret goes "
    "in ELECTRIC_SECRET.",
)
@click.option("--table", help="Table of the --electric shape; synced into a table of that name.")
@click.option("--where", help="Postgres WHERE clause of the --electric shape ($1.. for --param).")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="VALUE",
    help="Value of $1, $2, ... in --where, in order. Repeatable.",
)
@click.option("--columns", metavar="A,B", help="Columns of the --electric shape.")
@click.option(
    "--replica",
    "replica_mode",
    type=click.Choice(["default", "full"]),
    help="Electric replica mode of the --electric shape.",
)
@click.option(
    "--detached",
    type=click.Choice(["keep", "delete"]),
    help="A row that leaves every subscribed shape is kept with detached_at set (default for "
    "runs) or deleted (default for Electric tables).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    metavar="PATH",
    help="Subscriptions file, re-read when it changes (default: ./replica.toml if it exists).",
)
@click.option(
    "--resume-within",
    default="3d",
    show_default=True,
    metavar="DURATION",
    help="At start, a tag feed whose position was not used for this long starts over (a "
    "fresh created-at window, no rows lost meanwhile): Trigger.dev forgets a feed's window "
    "two weeks after its last use.",
)
@click.option(
    "--keep-others",
    is_flag=True,
    help="Keep the rows of shapes this command no longer names (by default a shape "
    "synced before but named neither here nor in replica.toml is let go of at start: its "
    "runs get detached_at, its Electric rows are deleted).",
)
@click.option(
    "--once",
    is_flag=True,
    help="Exit (status 0) once every shape is up to date, instead of following.",
)
@click.option("--insecure", is_flag=True, help="Do not verify TLS certificates.")
@logging_options
def sync(
    db_path: str,
    tags: Sequence[str],
    runs: Sequence[str],
    batches: Sequence[str],
    created_at: str | None,
    stop_on_completion: bool,
    skip_columns: Sequence[str],
    api_url: str,
    token_file: str | None,
    branch: str | None,
    electric_url: str | None,
    table: str | None,
    where: str | None,
    params: Sequence[str],
    columns: str | None,
    replica_mode: str | None,
    detached: str | None,
    config_path: str | None,
    resume_within: str,
    keep_others: bool,
    once: bool,
    insecure: bool,
) -> None:
    """Keep the replica in step with run feeds and shapes (until Ctrl-C, or --once).

    \b
    Examples:
      replica sync --tag user:1234
      replica sync --run run_abc --once
      replica sync --electric http://localhost:3000 --table items --where 'id > $1' --param 10

    The Trigger.dev token comes from TRIGGER_SECRET_KEY or TRIGGER_ACCESS_TOKEN (or
    --token-file), never from the command line.
    """
    try:
        specs = _command_line_specs(
            tags=tags,
            runs=runs,
            batches=batches,
            created_at=created_at,
            stop_on_completion=stop_on_completion,
            skip_columns=skip_columns,
            electric_url=electric_url,
            table=table,
            where=where,
            params=params,
            columns=columns,
            replica_mode=replica_mode,
        )
        # The default replica.toml is followed even if it is only made later.
        watched = Path(config_path or DEFAULT_CONFIG)
        config = config_file.load(watched) if config_path or watched.is_file() else None
        plan = _Plan(
            token_file=token_file,
            api_url=api_url,
            branch=branch,
            secret=electric_secret(),
            keep_detached=None if detached is None else detached == "keep",
            specs=specs,
            config_path=watched,
            config=config,
        )
        if any(not isinstance(s, ElectricSpec) for s in specs) or (config and config.needs_token):
            plan.trigger()  # a missing or bad token fails now
        resume_seconds = parse_duration(resume_within).total_seconds()
    except ReplicaError as exc:
        raise click.UsageError(str(exc)) from None
    if not specs and not (config and config.feeds):
        raise click.UsageError(
            "nothing to sync: give --tag, --run, --batch or --electric, or a replica.toml"
        )
    logs.redactor.add(plan.secret)
    # Until the engine's own handler is in place, a SIGTERM (a service manager stopping
    # us while we start) ends the command cleanly: nothing has been written yet, or the
    # write in progress (a migration) rolls back.
    signal.signal(signal.SIGTERM, _stop_before_start)
    failed = asyncio.run(
        _run(
            db_path,
            plan,
            once=once,
            verify=not insecure,
            keep_others=keep_others,
            resume_within=resume_seconds,
        )
    )
    if failed:
        raise SyncFailedError.naming(failed)


def _command_line_specs(
    *,
    tags: Sequence[str],
    runs: Sequence[str],
    batches: Sequence[str],
    created_at: str | None,
    stop_on_completion: bool,
    skip_columns: Sequence[str],
    electric_url: str | None,
    table: str | None,
    where: str | None,
    params: Sequence[str],
    columns: str | None,
    replica_mode: str | None,
) -> list[FeedSpec]:
    """The feeds the options name: one per --tag, --run and --batch, and the --electric one."""
    specs: list[FeedSpec] = []
    if electric_url or table or where or params or columns or replica_mode:
        if not electric_url or not table:
            raise click.UsageError("--electric and --table go together")
        specs.append(
            ElectricSpec(
                electric_url,
                table,
                where=where,
                params=tuple(params),
                columns=column_names([columns]) if columns else None,
                replica=replica_mode,  # type: ignore[arg-type]  # a click.Choice
            )
        )
    if (created_at or skip_columns) and not (tags or runs or batches):
        raise click.UsageError("--created-at and --skip-column apply to --tag/--run/--batch")
    skip = column_names(skip_columns)
    specs += [TagSpec(tag_names(v), created_at=created_at, skip_columns=skip) for v in tags]
    specs += [
        RunSpec(run_id.strip(), skip_columns=skip, stop_on_completion=stop_on_completion)
        for run_id in runs
    ]
    specs += [BatchSpec(batch_id.strip(), skip_columns=skip) for batch_id in batches]
    return specs


@dataclass
class _Plan:
    """What to follow: the command line's feeds, and a config file's, which share the
    Trigger.dev API and token, the Electric secret and the detach policy. `config_path` is
    the file watched for changes, `config` what it held at start (None: no file)."""

    token_file: str | None
    api_url: str
    branch: str | None
    secret: str | None
    keep_detached: bool | None
    specs: list[FeedSpec]
    config_path: Path
    config: config_file.Config | None
    _trigger: TriggerConfig | None = None

    def trigger(self) -> TriggerConfig:
        """How to reach Trigger.dev, read when first needed (a replica.toml may name
        Trigger.dev feeds only once the sync runs)."""
        if self._trigger is None:
            token = trigger_token(self.token_file)
            logs.redactor.add(token)
            self._trigger = TriggerConfig(token, api_url=self.api_url, branch=self.branch)
        return self._trigger

    def feeds(self) -> list[Feed]:
        """The feeds of the command line and of the config file as it was at start."""
        return [*self._feeds(self.specs), *self.config_feeds(self.config)]

    def config_feeds(self, config: config_file.Config | None) -> list[Feed]:
        return self._feeds(config.feeds if config is not None else ())

    def _feeds(self, specs: Sequence[FeedSpec]) -> list[Feed]:
        return [
            Feed(
                spec,
                None if isinstance(spec, ElectricSpec) else self.trigger(),
                self.secret,
                self.keep_detached,
            )
            for spec in specs
        ]


async def _run(
    db_path: str,
    plan: _Plan,
    *,
    once: bool,
    verify: bool,
    keep_others: bool,
    resume_within: float,
) -> dict[str, ReplicaError]:
    """Sync until done or stopped; the subscriptions that failed (label -> error)."""
    tls = httpx.create_ssl_context(verify=verify)  # loading the CA bundle takes ~45 ms
    async with sync_clients(tls) as (client, packets):
        sources = sources_for(plan.feeds(), client, packets=packets)
        with Store(db_path) as store:
            engine = Engine(store, client, once=once, resume_within=resume_within)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, _stopper(engine, sig))
            progress = Progress(engine, live_line=sys.stderr.isatty())
            background = [asyncio.create_task(progress.run())]
            if not once:
                background.append(
                    asyncio.create_task(_follow_config(engine, plan, client, packets))
                )
            # With a config file, the sync lasts even when every feed has ended: an edit
            # may add some.
            until_stopped = plan.config is not None and not once
            try:
                await engine.run(sources, until_stopped=until_stopped, keep_others=keep_others)
            finally:
                for task in background:
                    task.cancel()
                progress.finish()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
    return {
        engine.progress[key].label if key in engine.progress else key: error
        for key, error in engine.failed.items()
    }


async def _follow_config(
    engine: Engine, plan: _Plan, client: HttpClient, packets: HttpClient
) -> None:
    """Add and remove subscriptions as the config file changes, is made or removed (a bad
    edit is logged and ignored: the running subscriptions stay)."""
    path = plan.config_path.resolve()
    current = {s.key for s in sources_for(plan.config_feeds(plan.config), client)}
    seen = _stamp(path) if plan.config is not None else None
    # File events say when to look; a look every few seconds besides catches an edit made
    # before the watch was in place.
    async for _ in awatch(
        path.parent,
        watch_filter=lambda _change, changed: Path(changed).name == path.name,
        debounce=200,
        step=50,
        rust_timeout=CONFIG_RECHECK_MS,
        yield_on_timeout=True,
        recursive=False,
    ):
        stamp = _stamp(path)
        if stamp == seen:
            continue
        seen = stamp
        try:
            config = config_file.load(path) if stamp is not None else config_file.Config()
            feeds = plan.config_feeds(config)
            wanted = {s.key: s for s in sources_for(feeds, client, packets=packets)}
        except ReplicaError as exc:
            log.error(
                "%s changed but cannot be used: %s; keeping the current subscriptions",
                path.name,
                exc,
            )
            continue
        for key in current - set(wanted):
            log.info(
                "%s: removing %s",
                path.name,
                engine.progress[key].label if key in engine.progress else key,
            )
            await engine.remove(key)
        for key, source in wanted.items():
            if key not in current:
                log.info("%s: adding %s", path.name, source.label)
                engine.add(source)
        current = set(wanted)


#: How often (ms) the config file is looked at even without a file event.
CONFIG_RECHECK_MS = 2000


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells one version of a file from another (None: there is none)."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def _stop_before_start(signum: int, frame: Any) -> None:
    log.info("SIGTERM received while starting: stopping")
    raise SystemExit(0)


def _stopper(engine: Engine, sig: signal.Signals) -> Any:
    def stop() -> None:
        log.info("%s received: finishing the current write and stopping", sig.name)
        engine.stop()

    return stop
