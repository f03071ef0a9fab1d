"""Faust's Kafka transport, with a consumer that reads committed records only.

Faust's aiokafka consumer reads `read_uncommitted` unless the app runs Faust's own
`processing_guarantee="exactly_once"` (`AIOKafkaConsumerThread._create_worker_consumer` in
faust-streaming 0.15.3), which Herald does not use (docs/architecture.md). The escalation
agent reads `herald.signals`, which the shards write inside the transactions that commit
their input: read uncommitted, a delta of a transaction that aborted (a shard killed inside
it, or one that failed and rewound) would be applied, and again when the shard's next attempt
sends it, batched differently.
"""

from __future__ import annotations

from typing import ClassVar

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import ConsumerT, TransportT

READ_COMMITTED = "read_committed"


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: faust_aiokafka.Transport
                                ) -> aiokafka.AIOKafkaConsumer:  # fmt: skip
        consumer = super()._create_worker_consumer(transport)
        # aiokafka keeps the setting as given until start() builds its fetcher from it.
        consumer._isolation_level = READ_COMMITTED
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer: ClassVar[type[ConsumerT]] = _Consumer


class App(faust.App):
    """A Faust app whose consumers (agents, table recovery) read through `Transport`."""

    def _new_transport(self) -> TransportT:
        return Transport(self.conf.broker_consumer, self)
