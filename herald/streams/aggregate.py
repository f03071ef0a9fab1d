"""The aggregation role: owns the shards (partitions of `herald.events`) assigned to it.

Per batch and shard: apply → changelog → RocksDB (state + input offset in one write).
About once a second: changed windows go to `herald.aggregates` as full snapshot rows whose
`version` is the shard's input offset, so the sink can write them any number of times.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord, TopicPartition

from herald.kafka.loop import LoopService
from herald.model import topics
from herald.streams import changelog
from herald.streams.shard import Shard
from herald.tables.store import ShardStore

ROWS_PER_MESSAGE = 2000


class ShardService(LoopService):
    group = "shards"
    fetch_wait_ms = 100  # fewer, larger batches: one changelog round trip each

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shards: dict[int, Shard] = {}
        self._last_snapshot = 0.0

    def topics(self) -> Sequence[str]:
        return (topics.EVENTS,)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in sorted(assigned):
            if tp.partition in self.shards:
                continue
            store = ShardStore(self.settings.data_path / "state" / f"shard-{tp.partition}")
            await changelog.restore(self.settings, tp.partition, store)
            settings = self.settings
            shard = Shard(tp.partition, store, settings.grace_s, settings.retry,
                          settings.dedup_horizon_s, settings.retry_rate_per_s)  # fmt: skip
            self.shards[tp.partition] = shard
            if shard.offset is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, shard.offset)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        leaving = [self.shards[tp.partition] for tp in revoked if tp.partition in self.shards]
        await self._publish(leaving)
        for shard in leaving:
            del self.shards[shard.id]
            shard.store.close()

    async def rewind(self) -> None:
        """Resume each shard from the offset its store holds (not Kafka's committed one)."""
        for tp in self.consumer.assignment():
            shard = self.shards.get(tp.partition)
            if shard is None or shard.offset is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, shard.offset)

    async def process(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        changes = []
        for tp, records in batches.items():
            shard = self.shards.get(tp.partition)
            if shard is None or not records:
                continue
            change = shard.apply((r.offset, r.value) for r in records)
            changes.append((shard.id, shard.store, change))
            self.stats.add(**shard.take_counts())
        await changelog.record(self.producer, changes)
        if time.monotonic() - self._last_snapshot >= self.settings.snapshot_interval_s:
            await self._publish(list(self.shards.values()))
            self.stats.set_lag(self._lag())
            # Committed offsets are only for lag monitoring: the stores hold the positions.
            await self.commit_positions()

    async def _publish(self, shards: list[Shard]) -> None:
        """Send the changed rows of `shards`; once Kafka has them, clear their marks."""
        self._last_snapshot = time.monotonic()
        sent, published = [], []
        for shard in shards:
            rows, keys = shard.snapshot()
            if keys:
                key = str(shard.id).encode()
                sent += [await self.producer.send(topics.AGGREGATES, message, key=key)
                         for message in pack_rows(rows)]  # fmt: skip
                # Retries and dead letters: at least once, under deterministic ids.
                sent += [await self.producer.send(topic, value, key=out_key)
                         for topic, out_key, value in shard.messages(keys)]  # fmt: skip
                published.append((shard, keys))
        await asyncio.gather(*sent)
        for shard, keys in published:
            shard.published(keys)
        await changelog.record(
            self.producer, [(s.id, s.store, s.take_cleanup()) for s, _ in published]
        )

    async def commit_positions(self) -> None:
        offsets = {
            tp: self.shards[tp.partition].offset
            for tp in self.consumer.assignment()
            if tp.partition in self.shards and self.shards[tp.partition].offset is not None
        }
        if offsets:
            await self.consumer.commit(offsets)

    def _lag(self) -> int:
        lag = 0
        for tp in self.consumer.assignment():
            shard = self.shards.get(tp.partition)
            highwater = self.consumer.highwater(tp)
            if shard is not None and highwater is not None:
                lag += max(highwater - (shard.offset or 0), 0)
        return lag

    async def on_stop(self) -> None:
        await self._publish(list(self.shards.values()))
        for shard in self.shards.values():
            shard.store.close()
        self.shards.clear()
        await super().on_stop()


def pack_rows(rows: dict[str, list[dict[str, Any]]]) -> list[bytes]:
    """Snapshot rows, many to a message: {"table": name, "rows": [...]}."""
    return [
        orjson.dumps({"table": table, "rows": table_rows[i : i + ROWS_PER_MESSAGE]})
        for table, table_rows in rows.items()
        for i in range(0, len(table_rows), ROWS_PER_MESSAGE)
    ]
