"""Escalation transitions, passed on once (SPEC §3 "once, for real consumers").

The Faust agent (streams/escalate.py) computes transitions at least once: Faust commits its
input after its table writes and sends, so a crash repeats a message, never loses one, and a
repeated message yields the same transitions again. This stage makes that exactly once for a
read_committed consumer: per `herald.transitions` partition it remembers what it published
(RocksDB + its own changelog, `herald.published`), and each poll's new transitions — to
`herald.escalations`, as `escalations` rows to `herald.aggregates` — commit in one Kafka
transaction with the change that records them and the input offset it covers.

Faust's own `processing_guarantee="exactly_once"` would do this inside the agent, but in
faust-streaming 0.15.3 it does not (docs/architecture.md, measured here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord, TopicPartition

from herald.config import Escalations
from herald.kafka.loop import TransactionalLoop
from herald.model import topics
from herald.model.event import rfc3339
from herald.streams import changelog
from herald.streams.aggregate import pack_rows
from herald.tables.store import OFFSET, Change, ShardStore
from herald.telemetry import failpoints, metrics

SENT = b"s"  # s<escalation id>|<state>|<level> -> occurred ms: published
STATES = ("open", "escalate", "resolve")  # SPEC §5


class TransitionPublisher(TransactionalLoop):
    group = "publish"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stores: dict[int, ShardStore] = {}

    def topics(self) -> Sequence[str]:
        return (topics.TRANSITIONS,)

    async def on_start(self) -> None:
        for rule in Escalations.model_fields:  # every series from 0: increase() sees the first
            for state in STATES:
                self.meter.count(metrics.TRANSITIONS, 0, rule, state)
        await super().on_start()

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in sorted(assigned):
            if tp.partition not in self.stores:
                store = ShardStore(self.settings.data_path / "state" / f"published-{tp.partition}")
                await changelog.restore(self.settings, tp.partition, store, topics.PUBLISHED)
                self.stores[tp.partition] = store
        await self.rewind()

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.busy:  # the poll's transaction may be writing these stores
            for tp in revoked:
                store = self.stores.pop(tp.partition, None)
                if store is not None:
                    store.close()

    async def rewind(self) -> None:
        """Resume each partition after the last transition recorded as published."""
        for tp in self.consumer.assignment():
            offset = self.stores[tp.partition].meta(OFFSET) if tp.partition in self.stores else None
            if offset is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)

    async def process(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        fresh = {tp: new for tp, records in batches.items() if (new := self._unseen(tp, records))}
        if not fresh:
            return
        async with self.busy, self.txn.transaction():
            changes = []
            for tp, (transitions, change) in fresh.items():
                for t in transitions:
                    await self.txn.send(topics.ESCALATIONS, orjson.dumps(to_message(t)),
                                        key=t["escalation_id"].encode())  # fmt: skip
                for message in pack_rows({"escalations": [{**t, "version": 1}
                                                          for t in transitions]}):  # fmt: skip
                    await self.txn.send(topics.AGGREGATES, message)
                changes.append((tp.partition, self.stores[tp.partition], change))
            written = await changelog.send(self.txn, changes, topics.PUBLISHED)
            failpoints.hit("transitions-published")  # in the transaction, not committed
        changelog.write_local(written)
        for transitions, _ in fresh.values():  # counted once committed
            for t in transitions:
                self.meter.count(metrics.TRANSITIONS, 1, t["rule"], t["state"])

    def _unseen(self, tp: TopicPartition, records: list[ConsumerRecord]
                ) -> tuple[list[dict[str, Any]], Change] | None:  # fmt: skip
        """The transitions not published before, and the change recording them."""
        store, change, out = self.stores.get(tp.partition), Change(), []
        if store is None or not records:
            return None
        for record in records:
            t = orjson.loads(record.value)
            key = SENT + f"{t['escalation_id']}|{t['state']}|{t['level']}".encode()
            if key not in change.puts and store.meta(key) is None:
                change.put(key, t["occurred_at"])
                out.append(t)
        if not out:
            return None  # all seen: the stored offset may lag, re-reading them is harmless
        change.put(OFFSET, records[-1].offset + 1)
        return out, change

    async def on_stop(self) -> None:
        for store in self.stores.values():
            store.close()
        self.stores.clear()
        await super().on_stop()


def to_message(transition: dict[str, Any]) -> dict[str, Any]:
    """The `herald.escalations` document: times in RFC 3339."""
    times = {k: rfc3339(transition[k]) for k in ("opened_at", "occurred_at")}
    return {**transition, **times}
