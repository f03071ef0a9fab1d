"""The batch loop every Herald role runs inside the Faust worker.

A `LoopService` is a `mode.Service` (Faust's service model: started, stopped and supervised
with the app) that owns an aiokafka consumer and works on whole `getmany` batches. Faust's
per-event stream machinery tops out near 4.5 k events/s here (docs/architecture.md); a batch
of 20 000 records costs one call into this loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Sequence
from typing import Any

import mode
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from herald.config import Settings
from herald.kafka import clients
from herald.telemetry import logs, metrics
from herald.telemetry.metrics import Meter
from herald.telemetry.stats import PipelineStats

log = logging.getLogger(__name__)
POLL_MS = 200
RETRY_S = (0.5, 1, 2, 5, 10)


def next_offsets(batches: dict[TopicPartition, list[ConsumerRecord]]) -> dict[TopicPartition, int]:
    """Where each partition resumes after `batches`."""
    return {tp: records[-1].offset + 1 for tp, records in batches.items() if records}


class _Listener(ConsumerRebalanceListener):
    def __init__(self, service: LoopService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.service.forget_lag(set(revoked))
        await self.service.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.service.on_assigned(set(assigned))


class LoopService(mode.Service):
    """Consume `topics()` in batches and hand each batch to `process`."""

    group: str = ""
    # How long the broker may hold a fetch to fill it (clients.consumer); 0: answer at once.
    fetch_wait_ms: int = 0

    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        stats: PipelineStats,
        meter: Meter,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.producer = producer
        self.stats = stats
        self.meter = meter
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def consumer(self) -> AIOKafkaConsumer:
        assert self._consumer is not None, "consumer used before the service started"
        return self._consumer

    def topics(self) -> Sequence[str]:
        raise NotImplementedError

    async def process(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Handle one poll's records (possibly none); commit when they are safely done."""
        raise NotImplementedError

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Partitions joined this member (called inside the rebalance)."""

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Partitions leave this member: finish what was taken from them."""

    async def rewind(self) -> None:
        """After a failed batch: go back to the last committed input, so nothing is skipped."""
        for tp in self.consumer.assignment():
            committed = await self.consumer.committed(tp)
            if committed is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit the next offset to read per partition (`next_offsets`)."""
        if offsets:
            await self.consumer.commit(offsets)

    async def on_start(self) -> None:
        self.meter.count(metrics.KAFKA_ERRORS, 0, self.group)  # a series from the start
        self._consumer = clients.consumer(
            self.settings, self.group, self.topics(), _Listener(self), self.fetch_wait_ms
        )
        await self._consumer.start()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    @mode.Service.task
    async def _poll(self) -> None:
        failures = number = 0
        while not self.should_stop:
            try:
                batches = await self.consumer.getmany(
                    timeout_ms=POLL_MS, max_records=self.settings.batch_max
                )
                number += 1
                logs.BATCH.set((self.group, number))  # this task's log lines name the batch
                started = time.perf_counter()
                await self.process(batches)
                if self.meter.enabled:
                    await self._measure(batches, time.perf_counter() - started)
                failures = 0
            except (KafkaConnectionError, KafkaError) as exc:
                self.meter.count(metrics.KAFKA_ERRORS, 1, self.group)
                # The broker is away (restart, network): say so in one line and retry.
                delay = RETRY_S[min(failures, len(RETRY_S) - 1)]
                log.warning("%s: Kafka error (%s), retrying in %ss", self.group, exc, delay)
                failures += 1
                await self.sleep(delay)
                await self._rewind_quietly()

    async def _measure(
        self, batches: dict[TopicPartition, list[ConsumerRecord]], seconds: float
    ) -> None:
        """Once per batch, never per record: its size, time, and each partition's lag (to the
        position, not the last record: transaction markers take offsets too)."""
        records, assigned = 0, self.consumer.assignment()
        for tp, batch in batches.items():
            if batch:
                records += len(batch)
                highwater = self.consumer.highwater(tp)
                if highwater is not None and tp in assigned:
                    lag = highwater - await self.consumer.position(tp)
                    self.meter.set(metrics.LAG, lag, self.group, tp.topic, str(tp.partition))
        if records:
            self.meter.observe(metrics.BATCH_RECORDS, records, self.group)
            self.meter.observe(metrics.BATCH_SECONDS, seconds, self.group)

    def forget_lag(self, revoked: set[TopicPartition]) -> None:
        """A partition that left this member no longer has a lag here (its next owner's)."""
        gone = {(self.group, tp.topic, str(tp.partition)) for tp in revoked}
        self.meter.forget(metrics.LAG, lambda labels: labels not in gone)

    async def _rewind_quietly(self) -> None:
        try:
            await self.rewind()
        except KafkaError as exc:  # still away: the next poll fails and we come back here
            log.warning("%s: cannot rewind yet (%s)", self.group, exc)


class TransactionalLoop(LoopService):
    """A batch loop whose outputs commit in Kafka transactions. One transactional id per
    group member (`<prefix>-<group>-<host>-<web port>`): a restarted member fences its
    earlier incarnation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._txn: AIOKafkaProducer | None = None
        # Held by the poll's transaction and by revocation: aiokafka runs the rebalance
        # listener in its coordinator task, concurrently with the poll, and a revocation that
        # publishes or closes state must wait for the open transaction (seen under load:
        # "Invalid state transition IN_TRANSACTION -> IN_TRANSACTION", then a crash).
        self.busy = asyncio.Lock()

    @property
    def txn(self) -> AIOKafkaProducer:
        assert self._txn is not None, "transactional producer used before the service started"
        return self._txn

    async def on_start(self) -> None:
        member = f"{self.settings.group_prefix}-{self.group}-{socket.gethostname()}"
        self._txn = clients.producer(self.settings, f"{member}-{self.settings.web_port}")
        await self._txn.start()
        await super().on_start()

    async def on_stop(self) -> None:
        await super().on_stop()
        if self._txn is not None:
            await self._txn.stop()
