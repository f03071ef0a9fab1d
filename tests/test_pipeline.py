"""End to end, for real: broker, `herald run` processes, chDB. Counts must be exact.

Each test gets a fresh broker and data dir; the data set is generated with known totals
(duplicates, out-of-order events, invalid messages of every kind) and the ClickHouse tables
and views must equal those totals exactly — also after SIGKILLs and a lost state directory.
"""

from __future__ import annotations

import asyncio
import shutil
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from herald.config import Settings
from herald.kafka import admin, local_broker
from herald.load.simulate import Scenario, SimEvent, generate
from herald.load.totals import Totals, expected_totals
from herald.model import topics
from herald.tables.aggregates import COUNTERS
from tests.harness import Herald, wait_for

pytestmark = pytest.mark.slow
PARTITIONS = 4
COLUMNS = ", ".join(COUNTERS)
SUMS = ", ".join(f"sum({c}) AS {c}" for c in COUNTERS)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    """A broker of its own: topic names are fixed by the spec, so tests cannot share one."""
    data_dir = tmp_path / "broker"
    started = local_broker.start(data_dir, port=local_broker.free_port())
    try:
        yield started.bootstrap
    finally:
        local_broker.stop(data_dir)


def partition_of(msg: SimEvent) -> int:
    return zlib.crc32(msg.value) % PARTITIONS


def produce(bootstrap: str, messages: list[SimEvent]) -> None:
    """Send to explicit partitions (by content), so tests control which partition gets what."""

    async def send() -> None:
        settings = Settings(kafka_bootstrap=bootstrap, partitions=PARTITIONS)
        await admin.ensure_topics(settings, admin.herald_topics(settings))
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
        await producer.start()
        try:
            for msg in messages:
                await producer.send(msg.topic, msg.value, key=msg.key, partition=partition_of(msg))
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(send())


def by_broadcast(herald: Herald) -> dict[tuple[str, str], Counter[str]]:
    rows = herald.query(
        f"SELECT tenant_id, broadcast_id, {', '.join(COUNTERS)} FROM broadcast_summary"
    )
    return {
        (r["tenant_id"], r["broadcast_id"]): _counters(r)
        for r in rows
        if any(_counters(r).values())
    }


def by_region(herald: Herald) -> dict[tuple[str, str, str], Counter[str]]:
    rows = herald.query(
        f"SELECT tenant_id, region, channel, {', '.join(COUNTERS)} FROM region_summary"
    )
    return {(r["tenant_id"], r["region"], r["channel"]): _counters(r) for r in rows}


def by_minute(herald: Herald) -> dict[tuple[str, str, str], Counter[str]]:
    rows = herald.query(
        f"SELECT tenant_id, broadcast_id, toString(window_start) AS minute, {SUMS}"
        " FROM broadcast_stats_1m FINAL GROUP BY tenant_id, broadcast_id, window_start"
    )
    return {(r["tenant_id"], r["broadcast_id"], r["minute"]): _counters(r) for r in rows}


def _counters(row: dict[str, Any]) -> Counter[str]:
    return Counter({c: int(row[c]) for c in COUNTERS if int(row[c])})


def expected_minutes(totals: Totals) -> dict[tuple[str, str, str], Counter[str]]:
    return {
        (t, b, minute.strftime("%Y-%m-%d %H:%M:%S")): Counter(+c)
        for (t, b, minute), c in totals.by_broadcast_minute.items()
    }


def assert_exact(herald: Herald, totals: Totals, timeout_s: float = 120) -> None:
    """Wait until the views reach the totals, then check every table against them."""
    want = {k: Counter(+c) for k, c in totals.by_broadcast.items()}
    wait_for(lambda: by_broadcast(herald) == want, timeout_s, "broadcast_summary == totals")
    assert by_region(herald) == {k: Counter(+c) for k, c in totals.by_region.items()}
    assert by_minute(herald) == expected_minutes(totals)
    wait_for(
        lambda: (
            herald.query("SELECT count() AS n FROM invalid_events FINAL")[0]["n"] == totals.invalid
        ),
        30,
        "every invalid message in invalid_events",
    )
    raw = herald.query("SELECT count() AS n FROM events_raw FINAL")[0]["n"]
    assert raw == totals.valid


def test_exact_totals_with_uneven_partitions(broker: str, tmp_path: Path) -> None:
    messages = generate(Scenario(seed=11, invalid=40, keying="random"))
    totals = expected_totals(messages)
    assert totals.duplicates > 0 and totals.invalid == 40
    # Partition 0 is replayed first, the rest afterwards: its watermark runs far ahead, and the
    # table watermark (the minimum) must keep the slow partitions' events on time.
    first = [m for m in messages if partition_of(m) == 0]
    produce(broker, first)
    herald = Herald(tmp_path / "h", broker, idle_partition_s=60).start()
    try:
        wait_for(
            lambda: herald.query("SELECT count() AS n FROM events_raw")[0]["n"] > 0,
            60,
            "partition 0 being processed",
        )
        produce(broker, [m for m in messages if partition_of(m) != 0])
        assert_exact(herald, totals)
        late = herald.query("SELECT sum(late_dropped) AS n FROM pipeline_stats_1m FINAL")
        assert int(late[0]["n"] or 0) == 0
    finally:
        herald.stop()


def test_sigkill_mid_stream_stays_exact(broker: str, tmp_path: Path) -> None:
    messages = generate(Scenario(seed=5, broadcasts=60, users_per_broadcast=400, invalid=25))
    totals = expected_totals(messages)
    produce(broker, messages)
    data_dir = tmp_path / "h"
    port = local_broker.free_port()  # the same member identity after each restart
    for fraction in (0.15, 0.5, 0.8):
        herald = Herald(data_dir, broker, batch_max=2000, web_port=port).start()
        target = int(totals.valid * fraction)
        wait_for(
            lambda h=herald, t=target: h.query("SELECT count() AS n FROM events_raw")[0]["n"] >= t,
            120,
            f"{fraction:.0%} of the events processed",
            every_s=0.1,
        )
        herald.kill()
    herald = Herald(data_dir, broker, web_port=port).start()
    try:
        assert_exact(herald, totals)
    finally:
        herald.stop()


def test_lost_state_dir_is_restored_from_changelog(broker: str, tmp_path: Path) -> None:
    """A shard moving to a new host: no local RocksDB, only the changelog in Kafka."""
    messages = generate(Scenario(seed=3, invalid=5))
    half = len(messages) // 2
    totals = expected_totals(messages)
    produce(broker, messages[:half])
    data_dir = tmp_path / "h"
    port = local_broker.free_port()
    herald = Herald(data_dir, broker, web_port=port).start()
    first_half = expected_totals(messages[:half])
    try:
        wait_for(
            lambda: (
                sum(sum(c.values()) for c in by_broadcast(herald).values())
                == sum(sum(c.values()) for c in first_half.by_broadcast.values())
            ),
            120,
            "the first half counted",
        )
    finally:
        herald.kill()
    shutil.rmtree(data_dir / "state")
    produce(broker, messages[half:])
    herald = Herald(data_dir, broker, web_port=port).start()
    try:
        assert_exact(herald, totals)
    finally:
        herald.stop()


def test_replay_into_fresh_deployment_gives_identical_tables(tmp_path: Path) -> None:
    messages = generate(Scenario(seed=21, broadcasts=10, keying="user"))
    tables = []
    for run in ("a", "b"):
        data_dir = tmp_path / run
        broker = local_broker.start(data_dir / "broker", port=local_broker.free_port())
        try:
            produce(broker.bootstrap, messages)
            herald = Herald(data_dir / "h", broker.bootstrap).start()
            try:
                assert_exact(herald, expected_totals(messages))
                tables.append(
                    herald.query(
                        "SELECT tenant_id, broadcast_id, window_start, "
                        + ", ".join(COUNTERS)
                        + ", delivery_latency_hist, time_to_read_hist"
                        " FROM broadcast_stats_1m FINAL "
                        "ORDER BY tenant_id, broadcast_id, window_start"
                    )
                )
            finally:
                herald.stop()
        finally:
            local_broker.stop(data_dir / "broker")
    assert tables[0] == tables[1]


def test_worker_and_sink_as_separate_processes_sink_catches_up(broker: str, tmp_path: Path) -> None:
    """Scale-out roles: the worker never talks to ClickHouse, so it processes everything while
    no sink runs (a ClickHouse outage); a sink started afterwards catches up exactly."""
    messages = generate(Scenario(seed=13, invalid=10))
    totals = expected_totals(messages)
    produce(broker, messages)
    worker = Herald(tmp_path / "w", broker, role="worker").start()
    try:
        sink = Herald(tmp_path / "s", broker, role="sink")
        wait_for(lambda: _aggregates_end(broker) > 0, 60, "the worker publishing snapshot rows")
        sink.start()
        try:
            assert_exact(sink, totals)
        finally:
            sink.stop()
    finally:
        worker.stop()


def _aggregates_end(bootstrap: str) -> int:
    async def end() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            parts = [TopicPartition(topics.AGGREGATES, p) for p in range(PARTITIONS)]
            return sum((await consumer.end_offsets(parts)).values())
        finally:
            await consumer.stop()

    return asyncio.run(end())
