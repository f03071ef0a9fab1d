"""A rebalance revokes a shard while the poll's transaction is still open.

aiokafka runs the rebalance listener in its coordinator task, concurrently with the poll, and
the revocation publishes the leaving shards' last snapshot in a transaction of its own: it must
wait for the open one (under load this raced, "Invalid state transition IN_TRANSACTION ->
IN_TRANSACTION", and the process died). Real broker, real transactional producer.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from aiokafka.structs import TopicPartition

from herald.config import Settings
from herald.kafka import admin, clients
from herald.model import topics
from herald.model.packing import pack
from herald.streams.aggregate import ShardService
from herald.tables.store import ShardStore
from herald.telemetry.metrics import Meter
from herald.telemetry.stats import PipelineStats
from tests.test_shard import T0, delivery


def test_a_revocation_waits_for_the_open_transaction(kafka_bootstrap: str, tmp_path: Path) -> None:
    asyncio.run(_revoke_during_a_transaction(kafka_bootstrap, tmp_path))


async def _revoke_during_a_transaction(bootstrap: str, tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap=bootstrap, data_dir=tmp_path,
                        group_prefix=f"revoke{uuid.uuid4().hex[:6]}")  # fmt: skip
    await admin.ensure_topics(settings, admin.herald_topics(settings))
    producer = clients.producer(settings)
    await producer.start()
    service = ShardService(settings=settings, producer=producer, stats=PipelineStats("test"),
                           meter=Meter("test", enabled=False))  # fmt: skip
    await service.on_start()  # its producer and consumer, without the poll task
    try:
        shard = service.shards[0] = service._open(0, ShardStore(tmp_path / "shard-0"))
        shard.apply([(0, pack({"src": "deliveries/0", "wm": T0}, [delivery("delivered", T0)]))])
        # The poll's transaction (a snapshot is due) and the revocation, interleaved at the
        # transaction's first send.
        await asyncio.gather(service.process({}),
                             service.on_revoked({TopicPartition(topics.EVENTS, 0)}))  # fmt: skip
        assert 0 not in service.shards  # (the group may have assigned it others meanwhile)
    finally:
        await service.on_stop()
        await producer.stop()
