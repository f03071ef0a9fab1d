"""The aggregation role: owns the shards (partitions of `herald.events`) assigned to it.

Per batch and shard: apply → changelog → RocksDB (state + input offset in one write).
About once a second: changed windows go to `herald.aggregates` as full snapshot rows whose
`version` is the shard's input offset, so the sink can write them any number of times, and
retries and dead letters go to their topics.

Everything a poll sends — the shards' changes, snapshot rows, retries, dead letters, and the
change that marks those as sent — is one Kafka transaction (Kafka Streams' exactly-once):
a read_committed consumer sees each output once, and a restore replays only committed
changes. RocksDB is written once the transaction committed; if it did not, the shards are
rebuilt from their stores and the input is read again from the offsets those hold.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, RecordMetadata, TopicPartition

from herald.kafka.loop import TransactionalLoop
from herald.model import topics
from herald.streams import changelog
from herald.streams.shard import Shard
from herald.tables import signals
from herald.tables.store import ShardStore
from herald.telemetry import failpoints, metrics

log = logging.getLogger(__name__)
ROWS_PER_MESSAGE = 2000


class ShardService(TransactionalLoop):
    group = "shards"
    fetch_wait_ms = 100  # fewer, larger batches: one changelog round trip each

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shards: dict[int, Shard] = {}
        self._last_snapshot = 0.0
        self.outgoing = signals.Outgoing()  # the shards' escalation deltas, one for all
        self.sender = signals.Sender(self.settings.shards)
        self.meter.read_at_scrape(metrics.STATE_KEYS, self._state_keys)
        if self.settings.escalations.enabled:  # the shards meter these tenants' events
            for tenant, quota in self.settings.escalations.tenant_quota.quotas.items():
                self.meter.set(metrics.QUOTA, quota, tenant)
                self.meter.count(metrics.QUOTA_EVENTS, 0, tenant)  # a series from the start

    def _state_keys(self) -> dict[tuple[str, ...], float]:
        return {(str(p),): shard.store.estimated_keys() for p, shard in self.shards.items()}

    def topics(self) -> Sequence[str]:
        return (topics.EVENTS,)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in sorted(assigned):
            if tp.partition in self.shards:
                continue
            store = ShardStore(self.settings.data_path / "state" / f"shard-{tp.partition}")
            await changelog.restore(self.settings, tp.partition, store)
            shard = self.shards[tp.partition] = self._open(tp.partition, store)
            if shard.offset is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, shard.offset)

    def _open(self, partition: int, store: ShardStore) -> Shard:
        settings = self.settings
        return Shard(partition, store, settings.grace_s, settings.retry,
                     settings.dedup_horizon_s, settings.retry_rate_per_s,
                     settings.escalations,
                     settings.reach_horizon_s if settings.reach else None,
                     self.outgoing)  # fmt: skip

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.busy:
            leaving = [self.shards[tp.partition] for tp in revoked if tp.partition in self.shards]
            await self._last_transaction(leaving)
            for shard in leaving:
                del self.shards[shard.id]
                shard.store.close()

    async def rewind(self) -> None:
        """After a failed transaction: the shards again as their stores hold them (the last
        commit), each resuming from the input offset stored with it."""
        self.outgoing = signals.Outgoing()  # without the failed transaction's deltas
        self.shards = {p: self._open(p, shard.store) for p, shard in self.shards.items()}
        self.sender = signals.Sender(self.settings.shards)  # send every clock again
        for tp in self.consumer.assignment():
            shard = self.shards.get(tp.partition)
            if shard is None or shard.offset is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, shard.offset)

    async def process(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        snapshot = time.monotonic() - self._last_snapshot >= self.settings.snapshot_interval_s
        if not snapshot and not any(batches.values()):
            return  # nothing to send: no transaction

        async def sends() -> changelog.Written:
            changes = []
            for tp, records in batches.items():
                shard = self.shards.get(tp.partition)
                if shard is None or not records:
                    continue
                change = shard.apply((r.offset, r.value) for r in records)
                changes.append((shard.id, shard.store, change))
                self._count(shard.take_counts())
            signalled = []  # in flight with the changelog's records: one round trip for both
            if self.settings.escalations.enabled and (snapshot or changes):
                signalled = await self._signals()
            started = time.perf_counter()
            written = await changelog.send(self.txn, changes)
            if changes:
                self.meter.observe(metrics.CHANGELOG_SECONDS, time.perf_counter() - started,
                                   self.group)  # fmt: skip
            await asyncio.gather(*signalled)
            if snapshot:
                written += await self._snapshots(list(self.shards.values()))
            return written

        async with self.busy:
            await self._transact(sends)
        if snapshot:
            self.stats.set_lag(self._lag())
            # Committed offsets are only for lag monitoring: the stores hold the positions.
            await self.commit_positions()
        else:
            failpoints.hit("shards-committed")  # input and signals in, rows not yet published

    def _count(self, counts: dict[str, int]) -> None:
        self.stats.add(**counts)
        self.meter.count(metrics.DUPLICATES, counts["duplicates"])
        self.meter.count(metrics.LATE, counts["late_dropped"])

    async def _transact(self, sends: Callable[[], Awaitable[changelog.Written]]) -> None:
        """`sends` as one transaction; the stores are written once it committed."""
        started = time.perf_counter()
        async with self.txn.transaction():
            written = await sends()
        self.meter.observe(metrics.PRODUCE_SECONDS, time.perf_counter() - started, self.group)
        changelog.write_local(written)

    async def _signals(self) -> list[asyncio.Future[RecordMetadata]]:
        """Send the shards' escalation deltas and clocks in the transaction of the poll that
        made them (the agent gets each delta once, and no shard keeps unsent deltas in its
        state: rewriting them with every batch cost more than the messages); the sends'
        futures, not awaited."""
        for subject, seconds in self.outgoing.deltas.items():  # per subject, never per event
            if subject[0] == "tenant_quota":
                self.meter.count(metrics.QUOTA_EVENTS, sum(c[0] for c in seconds.values()),
                                 subject[1])  # fmt: skip
        parts = [(s.id, s.offset or 0, s.event_clock()) for s in self.shards.values()]
        messages = self.sender.messages(parts, self.outgoing)
        return [await self.txn.send(topics.SIGNALS, orjson.dumps(m), partition=m["partition"])
                for m in messages]  # fmt: skip

    async def _last_transaction(self, shards: list[Shard]) -> None:
        """Publish what `shards` changed before they leave; if Kafka is away, their next
        owner publishes it (the marks are in the committed state)."""
        try:
            await self._transact(lambda: self._snapshots(shards))
        except KafkaError as exc:
            log.warning("shards: last snapshot of %s not sent (%s)", [s.id for s in shards], exc)

    async def _snapshots(self, shards: list[Shard]) -> changelog.Written:
        """Send the changed rows, retries and dead letters of `shards`, and the change that
        clears their marks, all inside the caller's transaction."""
        self._last_snapshot = time.monotonic()
        sent, published = [], []
        for shard in shards:
            rows, keys = shard.snapshot()
            if keys:
                key = str(shard.id).encode()
                sent += [await self.txn.send(topics.AGGREGATES, message, key=key)
                         for message in pack_rows(rows)]  # fmt: skip
                outputs = shard.messages(keys)
                sent += [await self.txn.send(topic, value, key=out_key)
                         for topic, out_key, value in outputs]  # fmt: skip
                self._count_outputs([topic for topic, _, _ in outputs])
                published.append((shard, keys))
        await asyncio.gather(*sent)
        if published:
            failpoints.hit("outputs-sent")  # sent, and not yet recorded as sent
        for shard, keys in published:
            shard.published(keys)
        return await changelog.send(
            self.txn, [(s.id, s.store, s.take_cleanup()) for s, _ in published]
        )

    def _count_outputs(self, sent_to: list[str]) -> None:
        self.meter.count(metrics.RETRIES, sent_to.count(topics.RETRIES))
        self.meter.count(metrics.DEAD_LETTERS, sent_to.count(topics.DEADLETTER))

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
        if self._txn is not None:
            async with self.busy:
                await self._last_transaction(list(self.shards.values()))
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
