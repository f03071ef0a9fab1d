"""The `herald` command line. Commands are thin: each calls one module that does the work."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from herald.config import Settings, describe, load
from herald.errors import BadInput, HeraldError

F = TypeVar("F", bound=Callable[..., Any])


def one_line_errors(func: F) -> F:
    """Turn expected failures (bad config, unreachable services) into one line and exit 1
    (2 for bad arguments)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HeraldError as exc:
            click.echo(f"herald: {exc}", err=True)
            sys.exit(2 if isinstance(exc, BadInput) else 1)
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


@click.group(epilog="\b\n" + describe(), context_settings={"max_content_width": 120})
@click.version_option(package_name="herald")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Herald: exact, fast stream analytics for broadcast notifications."""
    # Clients log transient conditions they retry themselves (a partition leader moving, an
    # unreachable server we report in one line; urllib3 under clickhouse-connect's HTTP
    # client warns of each retried connection, and clickhouse-connect resets the level of
    # `urllib3` itself on import, hence its child): keep those out of the command's output.
    for noisy in ("aiokafka", "clickhouse_connect", "urllib3.connectionpool"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        ctx.obj = load()
    except HeraldError as exc:
        click.echo(f"herald: {exc}", err=True)
        sys.exit(2)


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.find_root().obj
    return settings


def _say(line: str) -> None:
    click.echo(f"  {line}", err=True)


# -- local Kafka -----------------------------------------------------------------------------


@main.group()
def kafka() -> None:
    """The local single-node KRaft broker (jars from Maven Central, cached once)."""


@kafka.command("start")
@click.pass_context
@one_line_errors
def kafka_start(ctx: click.Context) -> None:
    """Start the broker on 127.0.0.1:HERALD_KAFKA_PORT (idempotent)."""
    from herald.kafka import local_broker

    settings = _settings(ctx)
    broker = local_broker.start(settings.data_path, settings.kafka_port, progress=_say)
    state = "already running" if broker.already_running else "started"
    click.echo(f"Kafka {state} at {broker.bootstrap} (pid {broker.pid}, log {broker.log_path})")


@kafka.command("stop")
@click.pass_context
@one_line_errors
def kafka_stop(ctx: click.Context) -> None:
    """Stop the broker of this data dir."""
    from herald.kafka import local_broker

    stopped = local_broker.stop(_settings(ctx).data_path)
    click.echo("Kafka stopped" if stopped else "Kafka was not running")


@kafka.command("status")
@click.pass_context
@one_line_errors
def kafka_status(ctx: click.Context) -> None:
    """Say whether the broker runs and answers."""
    from herald.kafka import local_broker

    settings = _settings(ctx)
    click.echo(local_broker.status(settings.data_path, settings.kafka_port))


# -- ClickHouse ------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """The ClickHouse schema."""


@db.command("migrate")
@click.pass_context
@one_line_errors
def db_migrate(ctx: click.Context) -> None:
    """Create or upgrade the schema (idempotent, versioned)."""
    from herald.sinks import clickhouse, migrations

    settings = _settings(ctx)
    client = clickhouse.connect(settings.dsn)
    try:
        done = migrations.migrate(client, settings.raw_ttl_days,
                                  settings.escalations.tenant_quota.quotas)  # fmt: skip
    finally:
        client.close()
    click.echo("\n".join(done) if done else "schema is up to date")


@main.command()
@click.argument("sql")
@click.option("--tenant", default=None, help="see only this tenant's rows (ClickHouse enforces it)")
@click.pass_context
@one_line_errors
def query(ctx: click.Context, sql: str, tenant: str | None) -> None:
    """Run one read-only SQL statement on ClickHouse (through the running `herald run` in
    embedded mode): SELECT, WITH, SHOW, DESCRIBE, EXISTS or EXPLAIN."""
    from herald.processes.query import run_query

    click.echo(run_query(_settings(ctx), sql, tenant), nl=False)


@main.command()
@click.option("--all", "history", is_flag=True, help="every transition, not only the open ones")
@click.option("--tenant", default=None, help="only this tenant")
@click.pass_context
@one_line_errors
def escalations(ctx: click.Context, history: bool, tenant: str | None) -> None:
    """The open escalations: rule, subject, level, since, value against threshold."""
    from herald.processes.query import escalations_sql, run_query

    click.echo(run_query(_settings(ctx), escalations_sql(history, tenant), tenant), nl=False)


@main.command()
@click.option("--url", "urls", multiple=True, metavar="HOST:PORT",
              help="a worker's or sink's web port (repeat; default: 127.0.0.1:HERALD_WEB_PORT)")
@click.pass_context
@one_line_errors
def status(ctx: click.Context, urls: tuple[str, ...]) -> None:
    """One screen: processes and roles, lag per stage, rates, open escalations, last errors."""
    from herald.processes.status import status as show_status

    click.echo(show_status(_settings(ctx), list(urls)))


@main.command()
@click.argument("text")
@click.option("--tenant", default=None, help="only this tenant's events")
@click.option("--broadcast", default=None, help="only this broadcast's events")
@click.option("--user", default=None, help="only this user's events")
@click.option("--type", "types", multiple=True, help="only events of this type (repeatable)")
@click.option("--since", default=None, help="RFC 3339 (2026-11-23T10:00:00Z) or ago (1h, 2d)")
@click.option("--until", default=None, help="same forms as --since; exclusive")
@click.option("--limit", default=50, show_default=True, help="at most this many events")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per event")
@click.pass_context
@one_line_errors
def search(ctx: click.Context, text: str, tenant: str | None, broadcast: str | None,
           user: str | None, types: tuple[str, ...], since: str | None, until: str | None,
           limit: int, as_json: bool) -> None:  # fmt: skip
    """Past notifications and their events whose titles, payload or ids hold every word of
    TEXT (ignoring case), newest first."""
    from herald.processes.search import SearchRequest, parse_time, search

    request = SearchRequest(
        text, tenant, broadcast, user, types, limit=limit,
        since_ms=None if since is None else parse_time(since, "--since"),
        until_ms=None if until is None else parse_time(until, "--until"),
    )  # fmt: skip
    click.echo(search(_settings(ctx), request, as_json), nl=False)


# -- stream processing -----------------------------------------------------------------------


def _run_role(settings: Settings, role: str) -> None:
    from herald.processes.worker import run_worker

    run_worker(settings, role)


@main.command()
@click.pass_context
@one_line_errors
def run(ctx: click.Context) -> None:
    """Worker and sink in one process (the embedded default)."""
    _run_role(_settings(ctx), "run")


@main.command()
@click.option(
    "--only",
    type=click.Choice(["ingest", "shards"]),
    help="run one stage: ingest (validate, route) or the aggregation shards",
)
@click.pass_context
@one_line_errors
def worker(ctx: click.Context, only: str | None) -> None:
    """Ingest and aggregation shards (scale out by partitions)."""
    _run_role(_settings(ctx), only or "worker")


@main.command()
@click.pass_context
@one_line_errors
def sink(ctx: click.Context) -> None:
    """Write aggregates, raw and invalid events into ClickHouse."""
    _run_role(_settings(ctx), "sink")


# -- load ------------------------------------------------------------------------------------


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.pass_context
@one_line_errors
def produce(ctx: click.Context, files: tuple[Path, ...]) -> None:
    """Replay NDJSON lines {"topic": T, "key": K?, "value": V} into Kafka."""
    from herald.kafka import admin
    from herald.load.produce import produce_files

    settings = _settings(ctx)

    async def replay() -> int:
        await admin.ensure_topics(settings, admin.herald_topics(settings))
        return await produce_files(settings, list(files), progress=_say)

    sent = asyncio.run(replay())
    click.echo(f"{sent} messages produced")


@main.command()
@click.option("--rate", default=500.0, show_default=True, help="messages per second")
@click.option("--duration", default=60.0, show_default=True, help="seconds")
@click.option("--seed", type=int, default=None, help="same seed, same events [default: new]")
@click.option("--tenants", default=3, show_default=True)
@click.option("--invalid", default=20, show_default=True, help="invalid messages per scenario")
@click.pass_context
@one_line_errors
def simulate(
    ctx: click.Context, rate: float, duration: float, seed: int | None, tenants: int, invalid: int
) -> None:
    """Realistic live load: tenants, regions, channels, offline users, failures, late events."""
    import secrets

    from herald.load.simulate import Scenario, run_live

    # A new seed per run by default: replaying a seed re-sends the same event ids (duplicates).
    seed = secrets.randbits(31) if seed is None else seed
    _say(f"seed {seed}")
    scenario = Scenario(seed=seed, tenants=tenants, invalid=invalid)
    counts = asyncio.run(run_live(_settings(ctx), rate, duration, _say, scenario))
    click.echo(" ".join(f"{topic}={n}" for topic, n in sorted(counts.items())))


# -- contracts -------------------------------------------------------------------------------


@main.group()
def schema() -> None:
    """The input event contracts."""


@schema.command("export")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="write <topic>.schema.json files here instead of printing")  # fmt: skip
@one_line_errors
def schema_export(out: Path | None) -> None:
    """JSON Schema of the three input topics."""
    from herald.model.contracts import export_schemas

    click.echo(export_schemas(out))


# -- benchmark -------------------------------------------------------------------------------


@main.command()
@click.option("--events", default=1_000_000, show_default=True, help="size of the fixed load")
@click.option("--freshness-seconds", default=20.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.option("--ab", type=click.Choice(["escalations", "metrics", "reach"]), default=None,
              help="only an A/B: Herald with FEATURE against Herald without it")  # fmt: skip
@click.option("--pairs", default=2, show_default=True, help="A/B: runs of each arm")
@click.option("--audience", type=int, default=None,
              help="A/B: the load is one broadcast to this many users")  # fmt: skip
@click.option("--search", "search_rows", type=int, default=None, is_flag=False,
              flag_value=10_000_000,
              help="only search: over N raw events [default: 10 M]")  # fmt: skip
@one_line_errors
def bench(events: int, freshness_seconds: float, as_json: bool, ab: str | None,
          pairs: int, audience: int | None, search_rows: int | None) -> None:  # fmt: skip
    """Herald end to end vs raw aiokafka, naive Faust and Quix Streams, in one run
    (--search: only `herald search` over N raw events, index against full scan)."""
    import orjson

    from herald.bench.ab import render_ab, run_ab
    from herald.bench.run import BenchConfig, run_bench
    from herald.bench.search import render_search, run_search_bench
    from herald.bench.table import render

    if search_rows is not None:
        result = run_search_bench(search_rows, progress=_say)
        click.echo(orjson.dumps(result).decode() if as_json else render_search(result))
        return
    if ab is not None:
        result = run_ab(ab, events, pairs, progress=_say, audience=audience)
        click.echo(orjson.dumps(result).decode() if as_json else render_ab(result))
        return
    config = BenchConfig(events=events, freshness_s=freshness_seconds)
    result = run_bench(config, progress=_say)
    click.echo(orjson.dumps(result).decode() if as_json else render(result))


# -- dashboards and report -------------------------------------------------------------------


@main.group()
def dashboards() -> None:
    """Grafana dashboards and provisioning (grafana-clickhouse-datasource)."""


@dashboards.command("export")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path), default="dashboards")
@one_line_errors
def dashboards_export(out_dir: Path) -> None:
    """Write provisioning files and dashboard JSON into OUT_DIR."""
    from herald.dashboards.provisioning import export_dashboards

    for path in export_dashboards(out_dir):
        click.echo(path)


@dashboards.command("push")
@click.option("--url", required=True, help="Grafana URL, e.g. http://admin:admin@localhost:3000")
@click.option("--token", default=None, help="Grafana service account token")
@click.option("--clickhouse-host", default=None, help="ClickHouse host as Grafana reaches it")
@click.pass_context
@one_line_errors
def dashboards_push(ctx: click.Context, url: str, token: str | None,
                    clickhouse_host: str | None) -> None:  # fmt: skip
    """Create or update the data source and dashboards through the Grafana HTTP API."""
    from herald.dashboards.push import push_dashboards

    settings = _settings(ctx)
    click.echo(push_dashboards(url, token, clickhouse_dsn=settings.dsn,
                               clickhouse_host=clickhouse_host))  # fmt: skip


@main.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default="report.html",
              show_default=True)  # fmt: skip
@click.option("--tenant", default=None, help="only this tenant")
@click.pass_context
@one_line_errors
def report(ctx: click.Context, out: Path, tenant: str | None) -> None:
    """The dashboards' panels as one self-contained HTML file."""
    from herald.processes.query import write_report

    click.echo(write_report(_settings(ctx), out, tenant))


@main.command()
@click.option("--duration", default=60.0, show_default=True, help="seconds of simulated load")
@click.option("--rate", default=1500.0, show_default=True, help="messages per second")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default="report.html",
              show_default=True)  # fmt: skip
@click.pass_context
@one_line_errors
def demo(ctx: click.Context, duration: float, rate: float, out: Path) -> None:
    """From nothing to numbers: local Kafka, embedded ClickHouse, a simulated load, a report."""
    from herald.processes.demo import run_demo

    click.echo(run_demo(_settings(ctx), duration, rate, out, progress=_say))
