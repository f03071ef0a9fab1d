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
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord, TopicPartition
from clickhouse_connect.driver.client import Client

from herald import topics
from herald.sinks import clickhouse
from herald.streams.service import RETRY_S, LoopService

log = logging.getLogger(__name__)

Rows = dict[str, list[dict[str, Any]]]
RAW_FIELDS = ("user_id", "channel", "region", "error_code", "action_id")


def raw_event_row(event: dict[str, Any], now_ms: int) -> dict[str, Any]:
    row = {name: event.get(name) or "" for name in RAW_FIELDS}
    row.update(
        tenant_id=event["tenant_id"], event_id=event["event_id"], topic=event["topic"],
        type=event["type"], broadcast_id=event["broadcast_id"], occurred_at=event["ts"],
        attempt=event.get("attempt") or 0, latency_ms=event.get("latency_ms"),
        payload=orjson.dumps(event).decode(), ingested_at=now_ms,
    )  # fmt: skip
    return row


def rows_of(records: Sequence[ConsumerRecord], topic: str, now_ms: int) -> Rows:
    """Decode one partition's records into rows per ClickHouse table."""
    rows: Rows = defaultdict(list)
    for record in records:
        doc = orjson.loads(record.value)
        if topic == topics.AGGREGATES:
            rows[doc["table"]].extend(doc["rows"])
        elif topic == topics.INVALID:
            rows["invalid_events"].append(doc)
        elif "ev" in doc:
            rows["events_raw"].extend(raw_event_row(ev, now_ms) for ev in doc["ev"])
    return rows


class ClickHouseWriter:
    """One ClickHouse client shared by the sink and `herald query` (chDB allows one per process).

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

    def __init__(self, *args: Any, writer: ClickHouseWriter, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writer = writer

    def topics(self) -> Sequence[str]:
        raw = (topics.EVENTS,) if self.settings.raw_events else ()
        return (topics.AGGREGATES, topics.INVALID, *raw)

    async def process(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        if not any(batches.values()):
            return
        now_ms = int(time.time() * 1000)
        rows: Rows = defaultdict(list)
        for tp, records in batches.items():
            for table, table_rows in rows_of(records, tp.topic, now_ms).items():
                rows[table].extend(table_rows)
        written = await self._insert_until_done(rows)
        await self.commit(batches)
        self.stats.add(rows_written=written)

    async def _insert_until_done(self, rows: Rows) -> int:
        failures = 0
        while True:
            try:
                return sum([await self.writer.run(clickhouse.insert, table, table_rows)
                            for table, table_rows in rows.items()])  # fmt: skip
            except Exception as exc:  # any ClickHouse failure: keep the batch, retry later
                delay = RETRY_S[min(failures, len(RETRY_S) - 1)]
                log.warning("sink: ClickHouse insert failed (%s), retrying in %ss",
                            str(exc).splitlines()[0], delay)  # fmt: skip
                failures += 1
                await self.sleep(delay)
                if self.should_stop:
                    raise
