"""Shared fixtures. Tests talk to a real Kafka broker and a real chDB."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver import Client

from herald.kafka import local_broker
from herald.load.produce import SimEvent


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running broker's bootstrap: HERALD_TEST_KAFKA_BOOTSTRAP, or a local one for the session."""
    existing = os.environ.get("HERALD_TEST_KAFKA_BOOTSTRAP")
    if existing:
        yield existing
        return
    data_dir = tmp_path_factory.mktemp("kafka-session")
    broker = local_broker.start(data_dir, port=local_broker.free_port())
    try:
        yield broker.bootstrap
    finally:
        local_broker.stop(data_dir)


@pytest.fixture
def local_kafka(tmp_path: Path) -> Iterator[tuple[Path, local_broker.Broker]]:
    """A broker of its own and its data dir (the fault tests kill and restart it there)."""
    data_dir = tmp_path / "broker"
    started = local_broker.start(data_dir, port=local_broker.free_port())
    try:
        yield data_dir, started
    finally:
        local_broker.stop(data_dir)


@pytest.fixture
def broker(local_kafka: tuple[Path, local_broker.Broker]) -> str:
    """A broker of its own: topic names are fixed by the spec, so tests cannot share one."""
    return local_kafka[1].bootstrap


# The pipeline fixture's quotas: acme's bursts go over 5 events/s (tenant_quota opens, and
# the quota panels have an overage to show), globex stays far under, initech has none.
PIPELINE_QUOTAS = {"acme": 5, "globex": 1000}


@pytest.fixture(scope="session")
def pipeline_messages() -> list[SimEvent]:
    """What the pipeline fixture produces (the oracle of tests on its data): a simulated
    last hour, since pipeline health is kept by wall-clock minute and its panels must share
    the time range of the event-time data; a DE outage in the middle, so escalations open
    and resolve, retries and dead letters flow."""
    from herald.load.simulate import Scenario, generate

    start_ms = (int(time.time()) // 60 - 60) * 60_000
    return generate(Scenario(start_ms=start_ms, duration_s=3600, broadcasts=24,
                             invalid=12, outage=("DE", 600, 1500)))  # fmt: skip


@pytest.fixture(scope="session")
def pipeline_clickhouse_dir(
    tmp_path_factory: pytest.TempPathFactory, pipeline_messages: list[SimEvent]
) -> Path:
    """ClickHouse data written by the real pipeline: a fresh broker, `pipeline_messages`
    produced to it, `herald run` until every count is in, then everything stopped.
    Returns the chDB directory (free to open: no process holds it any more)."""
    from herald.config import Settings
    from herald.kafka import admin
    from herald.load.produce import produce_events
    from herald.load.totals import expected_totals
    from tests.harness import Herald, wait_for

    messages = pipeline_messages
    work = tmp_path_factory.mktemp("pipeline")
    broker = local_broker.start(work / "broker", port=local_broker.free_port())
    try:
        settings = Settings(kafka_bootstrap=broker.bootstrap)
        asyncio.run(admin.ensure_topics(settings, admin.herald_topics(settings)))
        asyncio.run(produce_events(settings, messages))
        delivered = expected_totals(messages).grand_total()["delivered"]
        quotas = json.dumps({"tenant_quota": {"quotas": PIPELINE_QUOTAS}})
        herald = Herald(work / "herald", broker.bootstrap, idle_partition_s=2,
                        escalations=quotas).start()  # fmt: skip
        try:
            wait_for(
                lambda: herald.query("SELECT sum(delivered) AS n FROM broadcast_summary")[0]["n"]
                == delivered,
                120,
                "the pipeline to count every delivery",
            )
            # Health rows are published every few seconds: the dashboards need them too.
            wait_for(
                lambda: herald.query("SELECT count() AS n FROM pipeline_stats_1m")[0]["n"] > 0,
                60,
                "pipeline health rows",
            )
            wait_for(
                lambda: herald.query("SELECT uniq(rule, state) AS n FROM escalations")[0]["n"] >= 3,
                60,
                "escalations opened and resolved",
            )
        finally:
            herald.stop()
    finally:
        local_broker.stop(work / "broker")
    return work / "herald" / "clickhouse"


@pytest.fixture(scope="module")
def pipeline_clickhouse(pipeline_clickhouse_dir: Path) -> Iterator[Client]:
    """A client on the pipeline's ClickHouse, opened per module (chDB allows one path per
    process at a time, so modules take turns)."""
    from herald.sinks.clickhouse import connect

    client = connect(f"chdb://{pipeline_clickhouse_dir}")
    try:
        yield client
    finally:
        client.close()
