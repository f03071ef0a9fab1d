"""A shard's changelog: every batch's `Change`, one message each, on `herald.changelog`.

The message is produced (and acknowledged) before the local RocksDB write, and the local store
records how far into the changelog it is. A host that gets a shard replays the changelog from
there (from the start on a new host), so a partition moved to another worker resumes with the
exact state and input offset the last owner persisted.
"""

from __future__ import annotations

import logging

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from herald.config import Settings
from herald.errors import HeraldError
from herald.kafka import clients
from herald.model import topics
from herald.tables.store import CHANGELOG, Change, ShardStore

log = logging.getLogger(__name__)


Written = list[tuple[ShardStore, Change, dict[bytes, bytes]]]


async def send(producer: AIOKafkaProducer, changes: list[tuple[int, ShardStore, Change]],
               topic: str = topics.CHANGELOG) -> Written:  # fmt: skip
    """Produce changes of several shards (all in flight at once); once acknowledged, each
    carries its changelog position, ready for `write_local` (after the transaction commits)."""
    pending = []
    for shard, store, change in changes:
        serialised = change.serialised()
        value = change.encode(serialised)
        pending.append((store, change, serialised, await producer.send(
            topic, value, partition=shard)))  # fmt: skip
    written = []
    for store, change, serialised, future in pending:
        sent = await future
        serialised[CHANGELOG] = orjson.dumps(sent.offset + 1)
        written.append((store, change, serialised))
    return written


def write_local(written: Written) -> None:
    """Each shard's RocksDB write, with its changelog position, in one WriteBatch."""
    for store, change, serialised in written:
        store.write(change, serialised)


async def restore(settings: Settings, shard: int, store: ShardStore,
                  topic: str = topics.CHANGELOG) -> int:  # fmt: skip
    """Bring the local store up to the end of the shard's committed changelog; return the
    records applied."""
    tp = TopicPartition(topic, shard)
    reader = clients.reader(settings)
    await reader.start()
    try:
        reader.assign([tp])
        start = store.meta(CHANGELOG) or 0
        first = (await reader.beginning_offsets([tp]))[tp]
        end = (await reader.end_offsets([tp]))[tp]
        if start > end:
            raise HeraldError(
                f"local state of shard {shard} is ahead of its changelog ({start} > {end}): "
                f"the data dir belongs to another Kafka cluster; remove {settings.data_path}/state"
            )
        if start < first:
            log.warning("shard %s: changelog retention passed local state; restoring from %s",
                        shard, first, extra={"shard": shard})  # fmt: skip
            start = first
        reader.seek(tp, start)
        applied = 0
        # By position, not by the last record's offset: transaction markers take offsets too,
        # and the reader never returns them (nor what aborted transactions wrote).
        while await reader.position(tp) < end:
            batch = await reader.getmany(tp, timeout_ms=1000)
            for rec in batch.get(tp, []):
                change = Change.decode(rec.value)
                serialised = change.serialised()
                serialised[CHANGELOG] = orjson.dumps(rec.offset + 1)
                store.write(change, serialised)
                applied += 1
        return applied
    finally:
        await reader.stop()
