"""Producing messages to Kafka as fast as aiokafka allows, and replaying NDJSON files.

`produce_events` builds one record batch per (topic, partition) itself and hands full batches
to `send_batch`. Measured here (180 k simulated messages, 4 partitions, local broker): ~190 k/s
and 0.8 CPU-s, against ~80 k/s and 2.2 CPU-s with `send` per message (a future and an
accumulator lookup per record).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from herald.config import Settings
from herald.errors import HeraldError, ServiceUnavailable
from herald.kafka import clients
from herald.kafka.admin import wait_for_broker

Progress = Callable[[str], None]

# Large batches amortise the per-request cost; the local broker accepts 1 MiB by default.
_BATCH_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One Kafka message: `value` is the exact bytes sent, `event` the JSON object it carries
    (None when the message is not a valid event)."""

    topic: str
    key: bytes | None
    value: bytes
    event: dict[str, Any] | None


@asynccontextmanager
async def open_producer(settings: Settings, **overrides: Any) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer with Herald's connection settings; a one-line error if unreachable."""
    kwargs: dict[str, Any] = {
        **clients.connection(settings),
        "acks": "all",
        "linger_ms": 5,
        "max_batch_size": _BATCH_BYTES,
        "request_timeout_ms": 30_000,
    }
    await wait_for_broker(settings, settings.connect_timeout_s)  # one line, after retries
    producer = AIOKafkaProducer(**{**kwargs, **overrides})
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise ServiceUnavailable(
            f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}"
        ) from exc
    try:
        yield producer
    finally:
        await producer.stop()


class Batcher:
    """Routes messages to per-partition batches with aiokafka's default partitioner (murmur2 of
    the key, random without one) and sends each batch when it is full."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._partitioner = DefaultPartitioner()
        self._partitions: dict[str, list[int]] = {}
        self._open: dict[tuple[str, int], BatchBuilder] = {}
        self._inflight: list[Any] = []

    async def add(self, msg: SimEvent) -> None:
        partitions = self._partitions.get(msg.topic) or await self._lookup(msg.topic)
        slot = (msg.topic, self._partitioner(msg.key, partitions, partitions))
        batch = self._open.get(slot)
        if batch is None:
            batch = self._open[slot] = self._producer.create_batch()
        if batch.append(timestamp=None, key=msg.key, value=msg.value) is None:
            await self._send(slot, batch)
            batch = self._open[slot] = self._producer.create_batch()
            if batch.append(timestamp=None, key=msg.key, value=msg.value) is None:
                raise HeraldError(f"a {len(msg.value)}-byte message does not fit in a batch")

    async def _lookup(self, topic: str) -> list[int]:
        # Asked explicitly: `partitions_for` would wait 30 s for a missing topic, logging a
        # warning at every retry, or have a broker auto-create it with default partitions.
        cluster = await self._producer.client.fetch_all_metadata()
        partitions = sorted(cluster.partitions_for_topic(topic) or ())
        if not partitions:
            raise HeraldError(f"Kafka topic {topic!r} does not exist")
        self._partitions[topic] = partitions
        return partitions

    async def send_open(self) -> None:
        """Send the partly filled batches too (a live stream does before it pauses)."""
        for slot, batch in self._open.items():
            await self._send(slot, batch)
        self._open.clear()
        for future in [f for f in self._inflight if f.done()]:
            future.result()  # raises the send's error, if any
        self._inflight = [f for f in self._inflight if not f.done()]

    async def flush(self) -> None:
        """Send every open batch and wait until the broker acknowledged all of them."""
        await self.send_open()
        for future in self._inflight:
            await future
        self._inflight.clear()

    async def _send(self, slot: tuple[str, int], batch: BatchBuilder) -> None:
        if batch.record_count():
            batch.close()
            topic, partition = slot
            self._inflight.append(
                await self._producer.send_batch(batch, topic, partition=partition)
            )


async def produce_events(
    settings: Settings, events: Iterable[SimEvent], progress: Progress | None = None
) -> int:
    """Send every message, wait for all acknowledgements, return how many were sent."""
    sent = 0
    last_report = time.monotonic()
    async with open_producer(settings) as producer:
        batcher = Batcher(producer)
        try:
            for msg in events:
                await batcher.add(msg)
                sent += 1
                if progress and sent % 10_000 == 0 and time.monotonic() - last_report >= 1.0:
                    last_report = time.monotonic()
                    progress(f"{sent} messages sent")
            await batcher.flush()
        except KafkaError as exc:
            raise ServiceUnavailable(
                f"producing to {settings.kafka_bootstrap} failed: {exc}"
            ) from exc
    if progress:
        progress(f"{sent} messages sent and acknowledged")
    return sent


def read_ndjson(path: Path) -> list[SimEvent]:
    """Parse one replay file; a malformed line raises HeraldError naming `file:line`."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise HeraldError(f"cannot read {path}: {exc.strerror}") from exc
    messages = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                messages.append(_parse_line(line))
            except ValueError as exc:
                raise HeraldError(f"{path}:{number}: {exc}") from exc
    return messages


def _parse_line(line: bytes) -> SimEvent:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not a JSON line ({exc})") from exc
    if not isinstance(record, dict):
        raise ValueError('expected an object {"topic": ..., "key": ..., "value": ...}')
    unknown = set(record) - {"topic", "key", "value"}
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
    topic, key, value = record.get("topic"), record.get("key"), record.get("value")
    if not isinstance(topic, str) or not topic:
        raise ValueError('"topic" must be a non-empty string')
    if key is not None and not isinstance(key, str):
        raise ValueError('"key" must be a string or null')
    if isinstance(value, dict):
        payload, event = orjson.dumps(value), value
    elif isinstance(value, str):
        payload, event = value.encode(), None
    else:
        raise ValueError('"value" must be an object (sent as JSON) or a string (sent as is)')
    return SimEvent(topic, key.encode() if key is not None else None, payload, event)


async def produce_files(
    settings: Settings, paths: list[Path], progress: Progress | None = None
) -> int:
    """Replay NDJSON files; every line is checked before anything is sent."""
    messages = [msg for path in paths for msg in read_ndjson(path)]
    if progress:
        progress(f"{len(messages)} messages read from {len(paths)} file(s)")
    return await produce_events(settings, messages, progress)
