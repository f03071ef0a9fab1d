"""The sink: Kafka → ClickHouse, committing input offsets only after the insert succeeded.

Snapshot rows are versioned (ReplacingMergeTree), raw and invalid events are keyed by their
identity, so writing a batch twice — after a crash between insert and commit — changes nothing.
While ClickHouse is unreachable the batch is retried with backoff and nothing is committed:
the worker keeps processing, and the sink catches up from Kafka afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord, TopicPartition
from clickhouse_connect.driver.client import Client

from herald.kafka.loop import RETRY_S, LoopService, next_offsets
from herald.model import event, topics
from herald.model.packing import event_rows
from herald.sinks import clickhouse
from herald.telemetry import metrics

log = logging.getLogger(__name__)

Rows = dict[str, list[dict[str, Any]]]


@dataclass
class Batch:
    """One poll's worth of sink input: snapshot rows per table, and raw events as JSON."""

    rows: Rows = field(default_factory=lambda: defaultdict(list))
    raw_events: list[bytes] = field(default_factory=list)

    def add(self, topic: str, records: Sequence[ConsumerRecord]) -> None:
        for record in records:
            if topic == topics.AGGREGATES:
                doc = orjson.loads(record.value)
                self.rows[doc["table"]].extend(doc["rows"])
            elif topic == topics.INVALID:
                self.rows["invalid_events"].append(orjson.loads(record.value))
            else:
                events = event_rows(record.value)
                if events:
                    self.raw_events.append(events)


# Per table: rows written (None for events_raw, whose rows ClickHouse parses) and seconds.
Inserted = dict[str, tuple[int | None, float]]


def write_batch(client: Client, batch: Batch) -> Inserted:
    """Insert everything (idempotent: run it again after a failure)."""
    inserted: Inserted = {}
    for table, rows in batch.rows.items():
        started = time.perf_counter()
        written = clickhouse.insert(client, table, rows)
        inserted[table] = (written, time.perf_counter() - started)
    if batch.raw_events:
        started = time.perf_counter()
        body = b",\n".join(batch.raw_events)
        clickhouse.insert_json_rows(client, "events_raw", event.COLUMNS, body)
        inserted["events_raw"] = (None, time.perf_counter() - started)
    return inserted


class ClickHouseWriter:
    """The sink's ClickHouse client, for its inserts (preflight migrates). People's queries
    never use it: each gets a read-only client of its own (herald.sinks.readers), which
    chDB allows on the same path in the same process.

    chDB has no async client: calls run in a thread, one at a time.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._client: Client | None = None
        self._lock = threading.Lock()

    def _call(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            if self._client is None:
                self._client = clickhouse.connect(self.dsn)
            return fn(self._client, *args)

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(self._call, fn, *args)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


class SinkService(LoopService):
    group = "sink"
    fetch_wait_ms = 250  # each insert has a fixed cost (a part, later merges): fewer, larger

    def __init__(self, *args: Any, writer: ClickHouseWriter, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writer = writer

    async def on_start(self) -> None:
        self.meter.count(metrics.SINK_FAILURES, 0)  # a series from the start, for rate()
        await super().on_start()

    def topics(self) -> Sequence[str]:
        raw = (topics.EVENTS,) if self.settings.raw_events else ()
        return (topics.AGGREGATES, topics.INVALID, *raw)

    async def process(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        if not any(batches.values()):
            return
        batch = Batch()
        for tp, records in batches.items():
            batch.add(tp.topic, records)
        inserted = await self._insert_until_done(batch)
        await self.commit(next_offsets(batches))
        self.stats.add(rows_written=sum(n or 0 for n, _ in inserted.values()))
        for table, (written, seconds) in inserted.items():
            if written is not None:
                self.meter.count(metrics.SINK_ROWS, written, table)
            self.meter.observe(metrics.INSERT_SECONDS, seconds, table)

    async def _insert_until_done(self, batch: Batch) -> Inserted:
        failures = 0
        while True:
            try:
                inserted: Inserted = await self.writer.run(write_batch, batch)
                return inserted
            except Exception as exc:  # any ClickHouse failure: keep the batch, retry later
                self.meter.count(metrics.SINK_FAILURES, 1)
                delay = RETRY_S[min(failures, len(RETRY_S) - 1)]
                log.warning("sink: ClickHouse insert failed (%s), retrying in %ss",
                            str(exc).splitlines()[0], delay)  # fmt: skip
                failures += 1
                await self.sleep(delay)
                if self.should_stop:
                    raise
