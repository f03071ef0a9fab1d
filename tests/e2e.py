"""End-to-end helpers: a broker per test, producing to chosen partitions, and the exactness
check of ClickHouse's tables and views against the oracle (herald.load.totals)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
import urllib.request
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from prometheus_client.parser import text_string_to_metric_families

from herald.config import Settings
from herald.kafka import admin
from herald.load.simulate import SimEvent
from herald.load.totals import Totals
from herald.model import topics
from herald.model.schema import COUNTERS
from herald.processes.child import HeraldProcess
from tests.harness import Herald, wait_for

PARTITIONS = 4
COLUMNS = ", ".join(COUNTERS)
SUMS = ", ".join(f"sum({c}) AS {c}" for c in COUNTERS)
JITTER = random.Random(20261201)


def partition_of(msg: SimEvent) -> int:
    return zlib.crc32(msg.value) % PARTITIONS


def produce(
    bootstrap: str,
    messages: list[SimEvent],
    partition: Callable[[SimEvent], int] = partition_of,
    partitions: int = PARTITIONS,
) -> None:
    """Send to explicit partitions (by content unless told), so tests control which partition
    gets what."""

    async def send() -> None:
        settings = Settings(kafka_bootstrap=bootstrap, partitions=partitions)
        await admin.ensure_topics(settings, admin.herald_topics(settings))
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
        await producer.start()
        try:
            for msg in messages:
                await producer.send(msg.topic, msg.value, key=msg.key, partition=partition(msg))
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(send())


class Paced:
    """Produce `messages` in `steps` parts, about one a second, from a thread (load, not a
    wait). `pause()` holds the producer between two parts until `resume()`: a fault of the
    broker must not cut a part in half (a retried part would send some messages twice)."""

    def __init__(self, bootstrap: str, messages: list[SimEvent], steps: int = 20,
                 partition: Callable[[SimEvent], int] = partition_of) -> None:  # fmt: skip
        self.bootstrap, self.messages, self.steps = bootstrap, messages, steps
        self.partition = partition
        self._between_parts = threading.Lock()
        self._thread = threading.Thread(target=self._run)

    def start(self) -> Paced:
        self._thread.start()
        return self

    def _run(self) -> None:
        n, steps = len(self.messages), self.steps
        for i in range(steps):
            with self._between_parts:
                part = self.messages[n * i // steps : n * (i + 1) // steps]
                produce(self.bootstrap, part, self.partition)
            time.sleep(1.0)  # the pace of the load, not a wait

    def running(self) -> bool:
        return self._thread.is_alive()

    def pause(self) -> None:
        self._between_parts.acquire()

    def resume(self) -> None:
        self._between_parts.release()

    def join(self) -> None:
        self._thread.join()


def kill_at(fraction: float, totals: Totals, watched: HeraldProcess,
            kill: HeraldProcess | int | Callable[[], None]) -> None:  # fmt: skip
    """Once `watched` shows `fraction` of the events, SIGKILL `kill` (a process or a pid, or
    call it)."""
    target = int(totals.valid * fraction)
    wait_for(lambda: raw_count(watched) >= target, 120, f"{fraction:.0%} processed", every_s=0.1)
    shown = raw_count(watched)  # answered between two inserts: the pause moves the kill off it
    time.sleep(JITTER.uniform(0, 0.5))  # where in its work the process dies, not a wait
    if isinstance(kill, int):
        os.kill(kill, signal.SIGKILL)
    elif isinstance(kill, HeraldProcess):
        kill.kill()
    else:
        kill()
    assert 0 < shown < totals.valid, f"the kill at {fraction:.0%} was not mid-stream"


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


def reach(herald: Herald) -> tuple[dict[tuple[str, str], tuple[int, int, int]],
                                   dict[tuple[str, str, str], tuple[int, int]]]:  # fmt: skip
    """Distinct recipients delivered, read (and responded) per broadcast; delivered and read
    per broadcast and channel."""
    per_broadcast = herald.query("SELECT tenant_id, broadcast_id, recipients_delivered AS d,"
                                 " recipients_read AS r, recipients_responded AS a"
                                 " FROM broadcast_summary")  # fmt: skip
    per_channel = herald.query("SELECT tenant_id, broadcast_id, channel, recipients_delivered"
                               " AS d, recipients_read AS r FROM broadcast_channel_summary")
    return (
        {(r["tenant_id"], r["broadcast_id"]): (int(r["d"]), int(r["r"]), int(r["a"]))
         for r in per_broadcast if int(r["d"]) or int(r["r"]) or int(r["a"])},
        {(r["tenant_id"], r["broadcast_id"], r["channel"]): (int(r["d"]), int(r["r"]))
         for r in per_channel if int(r["d"]) or int(r["r"])},
    )  # fmt: skip


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
    assert reach(herald) == (
        {k: v for k, v in totals.recipients().items() if any(v)},
        {k: v for k, v in totals.channel_recipients().items() if any(v)},
    )
    wait_for(
        lambda: (
            herald.query("SELECT count() AS n FROM invalid_events FINAL")[0]["n"] == totals.invalid
        ),
        30,
        "every invalid message in invalid_events",
    )
    # Raw events come through their own topic: after a sink outage they may trail the rows.
    wait_for(
        lambda: herald.query("SELECT count() AS n FROM events_raw FINAL")[0]["n"] == totals.valid,
        30,
        "every valid event in events_raw",
    )
    wait_for(lambda: lifecycles(herald) == totals.lifecycles, 30, "broadcasts == lifecycles")
    assert histograms(herald) == expected_histograms(totals)


LIFECYCLE_SQL = """
SELECT tenant_id, broadcast_id, status, priority, channels, target_count, targeting_mode,
       segment, content_format, language, ack_deadline_s, title,
       toUnixTimestamp64Milli(expires_at) AS expires_at,
       toUnixTimestamp64Milli(created_at) AS created_at,
       toUnixTimestamp64Milli(scheduled_at) AS scheduled_at,
       toUnixTimestamp64Milli(sent_at) AS sent_at,
       toUnixTimestamp64Milli(completed_at) AS completed_at,
       toUnixTimestamp64Milli(cancelled_at) AS cancelled_at
FROM broadcasts FINAL"""


def lifecycles(herald: Herald) -> dict[tuple[str, str], dict[str, Any]]:
    """The `broadcasts` rows, in the oracle's terms (times as epoch ms)."""
    rows = herald.query(LIFECYCLE_SQL)
    return {(r.pop("tenant_id"), r.pop("broadcast_id")): r for r in rows}


def histograms(herald: Herald) -> dict[str, dict[tuple[str, str, str], Counter[int]]]:
    """Per broadcast and minute, the latency and time-to-read bucket counts (non-empty)."""
    rows = herald.query(
        "SELECT tenant_id, broadcast_id, toString(window_start) AS minute,"
        " delivery_latency_hist AS latency, time_to_read_hist AS time_to_read"
        " FROM broadcast_stats_1m FINAL"
    )
    return {
        name: {(r["tenant_id"], r["broadcast_id"], r["minute"]):
               Counter({int(b): int(n) for b, n in r[name].items()}) for r in rows if r[name]}
        for name in ("latency", "time_to_read")
    }  # fmt: skip


def expected_histograms(totals: Totals) -> dict[str, dict[tuple[str, str, str], Counter[int]]]:
    return {
        name: {(t, b, m.strftime("%Y-%m-%d %H:%M:%S")): Counter(h) for (t, b, m), h in by.items()}
        for name, by in (("latency", totals.latency), ("time_to_read", totals.time_to_read))
    }


def aggregates_end(bootstrap: str) -> int:
    async def end() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            parts = [TopicPartition(topics.AGGREGATES, p) for p in range(PARTITIONS)]
            return sum((await consumer.end_offsets(parts)).values())
        finally:
            await consumer.stop()

    return asyncio.run(end())


def delete_consumed(
    bootstrap: str, topic: str, groups: list[str] = (), partitions: int = PARTITIONS,
    timeout_s: float = 60,
) -> int:  # fmt: skip
    """Delete what `topic` holds now (Kafka's DeleteRecords), once every one of `groups` has
    committed past it. Returns how many records were deleted."""

    async def committed(admin_client: AIOKafkaAdminClient, group: str) -> dict[Any, int]:
        offsets = await admin_client.list_consumer_group_offsets(f"herald-{group}")
        return {tp: meta.offset for tp, meta in offsets.items()}

    async def delete() -> int:
        admin_client = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await admin_client.start()
        await consumer.start()
        try:
            parts = [TopicPartition(topic, p) for p in range(partitions)]
            start, upto = await consumer.beginning_offsets(parts), await consumer.end_offsets(parts)
            deadline = asyncio.get_running_loop().time() + timeout_s
            for group in groups:
                while True:
                    done = await committed(admin_client, group)
                    if all(done.get(tp, -1) >= upto[tp] for tp in parts):
                        break
                    assert asyncio.get_running_loop().time() < deadline, f"{group} is behind"
                    await asyncio.sleep(0.2)  # polling a condition with a deadline
            await admin_client.delete_records({tp: RecordsToDelete(n) for tp, n in upto.items()})
            return sum(upto[tp] - start[tp] for tp in parts)
        finally:
            await consumer.stop()
            await admin_client.close()

    return asyncio.run(delete())


def raw_count(herald: Herald) -> int:
    """Distinct valid events ClickHouse holds now."""
    return int(herald.query("SELECT count() AS n FROM events_raw FINAL")[0]["n"])


def scrape(process: HeraldProcess, sample: str, label: str) -> dict[str, float]:
    """One sample of the process's /metrics, summed per value of `label`."""
    url = f"http://127.0.0.1:{process.settings.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    summed: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample:
                summed[found.labels[label]] += found.value
    return dict(summed)


def read_records(bootstrap: str, topic: str) -> list[ConsumerRecord]:
    """Everything on `topic`, as a read_committed consumer sees it."""

    async def read() -> list[ConsumerRecord]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                    enable_auto_commit=False)  # fmt: skip
        await consumer.start()
        try:
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            parts = parts or [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            end = await consumer.end_offsets(parts)
            out: list[ConsumerRecord] = []
            deadline = asyncio.get_running_loop().time() + 30
            while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
                assert asyncio.get_running_loop().time() < deadline, f"{topic} not read"
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    out.extend(records)
            return out
        finally:
            await consumer.stop()

    return asyncio.run(read())


def read_topic(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """The JSON documents on `topic`, as a read_committed consumer sees them."""
    return [orjson.loads(r.value) for r in read_records(bootstrap, topic)]
