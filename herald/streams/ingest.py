"""Ingest: validate input records and route them to aggregation shards.

Valid events are re-keyed by (tenant, broadcast) so that one shard owns everything about a
broadcast (dedup, windows, lifecycle, time-to-read), and packed many to a Kafka message on
`herald.events`: producing one message per event would cost more than all the counting.
Each packed message carries its source partition's watermark, and quiet partitions are
reported by heartbeats, so watermarks travel through the repartition (SPEC §4).

Delivery into `herald.events` is at-least-once (input offsets are committed after the broker
acknowledged the packed messages); shards deduplicate by (tenant, event_id), which makes a
replay harmless. An input offset is committed only once a heartbeat has also told every shard
the watermark of the records before it: a restarted ingest knows no watermark, and re-reads
only what follows its commit, so a shard that never got one of those records would otherwise
wait for that partition's next event to learn how far it went (forever, if none comes).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from herald.config import Settings
from herald.kafka.loop import LoopService, next_offsets
from herald.model import topics
from herald.model.event import Event, rfc3339
from herald.model.packing import pack
from herald.streams.decode import decode
from herald.streams.validate import InvalidEvent, reason
from herald.telemetry import failpoints, metrics

log = logging.getLogger(__name__)
CHUNK = 2000  # events per packed message: ~300 kB, under Kafka's default 1 MB
# A shard learns the watermark of an input partition whose events go to other shards only
# from heartbeats: their interval is most of how far its clock, and so escalations, trail.
HEARTBEAT_S = 0.5


def shard_of(tenant_id: str, broadcast_id: str, shards: int) -> int:
    return zlib.crc32(f"{tenant_id}\x00{broadcast_id}".encode()) % shards


def source_id(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


def invalid_record(record: ConsumerRecord, error: str) -> dict[str, Any]:
    """What `herald.invalid` and table `invalid_events` keep of a message that failed checks."""
    raw: bytes = record.value or b""
    return {
        "tenant_id": _tenant_hint(raw),
        "source_topic": record.topic,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "error": error,
        "raw": base64.b64encode(raw).decode(),
        "received_at": int(time.time() * 1000),
    }


def _tenant_hint(raw: bytes) -> str:
    try:
        tenant = orjson.loads(raw).get("tenant_id")
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    return tenant if isinstance(tenant, str) and len(tenant) <= 64 else ""


@dataclass
class Source:
    """What ingest knows of one input partition."""

    watermark: int = 0
    # Idleness counts from when the partition was first seen: an empty partition holds the
    # watermark back for the idle period too, so data produced to it a moment later is on time.
    last_record: float = field(default_factory=time.monotonic)


class Router:
    """Pure routing: records of one partition in, packed messages per shard and invalids out.

    An event further ahead of the wall clock than `max_future_s` is invalid: it would push its
    partition's watermark into the future and close every window before its events came.
    """

    def __init__(self, shards: int, max_future_s: float = 900) -> None:
        self.shards = shards
        self.max_future_ms = int(max_future_s * 1000)
        self.sources: dict[str, Source] = {}

    def route(
        self, topic: str, partition: int, records: Sequence[ConsumerRecord]
    ) -> tuple[list[tuple[int, bytes]], list[dict[str, Any]]]:
        source_name = source_id(topic, partition)
        source = self.sources.setdefault(source_name, Source())
        by_shard: dict[int, list[Event]] = {}
        invalid = []
        watermark = source.watermark
        now_ms = int(time.time() * 1000)
        for record in records:
            try:
                event = decode(topic, record.value)
                if event.ts > now_ms + self.max_future_ms:
                    raise self._from_the_future(event.ts, now_ms)
            except InvalidEvent as exc:
                invalid.append(invalid_record(record, str(exc)))
                continue
            shard = shard_of(event.tenant_id, event.broadcast_id, self.shards)
            by_shard.setdefault(shard, []).append(event)
            if event.ts > watermark:
                watermark = event.ts
        header = {"src": source_name, "wm": source.watermark}
        packed = [
            (shard, pack(header, chunk))
            for shard, events in by_shard.items()
            for chunk in _chunks(events)
        ]
        # Messages carry the watermark from before this batch; the shard advances it per event.
        source.watermark = watermark
        source.last_record = time.monotonic()
        return packed, invalid

    def _from_the_future(self, ts_ms: int, now_ms: int) -> InvalidEvent:
        return InvalidEvent(
            f"occurred_at: {rfc3339(ts_ms)} is {(ts_ms - now_ms) / 1000:.0f} s ahead of the wall "
            f"clock (at most {self.max_future_ms // 1000} s, HERALD_MAX_FUTURE_S)"
        )

    def heartbeat(self, idle: dict[str, bool]) -> bytes:
        """One message for every shard: each assigned partition's watermark and idleness."""
        beats = {name: [self.sources.setdefault(name, Source()).watermark, idle[name]]
                 for name in idle}  # fmt: skip
        return pack({"hb": beats})


def _chunks(events: list[Event]) -> list[list[Event]]:
    return [events[i : i + CHUNK] for i in range(0, len(events), CHUNK)]


class IngestService(LoopService):
    """Consumes the three input topics in batches and feeds `herald.events`.

    One batch stays in flight: while the broker acknowledges batch N, batch N+1 is validated
    and routed. Input offsets are still committed only after their batch (and every batch
    before it) is acknowledged.
    """

    group = "ingest"

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.router = Router(settings.shards, settings.max_future_s)
        self._last_heartbeat = 0.0
        self._in_flight: asyncio.Future[None] | None = None
        self._unannounced: dict[TopicPartition, int] = {}  # routed since the last heartbeat

    async def on_start(self) -> None:
        for topic in self.topics():  # counters start at 0, so rate() sees the first batch
            self.meter.count(metrics.EVENTS_IN, 0, topic)
        await super().on_start()

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._last_heartbeat = 0.0  # announce new partitions before their data

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        # Commit what was taken from these partitions while they are still ours; if that
        # fails, the next owner starts from the last commit (shards deduplicate the replay).
        try:
            await self._drain()
        except KafkaError as exc:
            log.warning("ingest: batch in flight failed at rebalance (%s)", exc)

    async def rewind(self) -> None:
        """The batch in flight is part of what failed: drop it, resume from the last commit."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None and not in_flight.cancel():
            in_flight.exception()  # it already ended; a failure was reported by `process`
        self._unannounced = {}
        await super().rewind()

    async def on_stop(self) -> None:
        try:
            await self._drain()
        except KafkaError as exc:  # the next start resumes from the last commit
            log.warning("ingest: batch in flight failed at stop (%s)", exc)
        await super().on_stop()

    def topics(self) -> Sequence[str]:
        return topics.INPUT_TOPICS

    async def process(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        started = time.perf_counter()
        sends, announced = await self._send(batches)
        previous = self._in_flight
        self._in_flight = asyncio.ensure_future(
            self._commit_when_acked(previous, sends, announced, started)
        )
        if previous is not None:
            await previous  # at most one batch in flight; its failure surfaces here

    async def _drain(self) -> None:
        """Finish the batch in flight, then announce and commit everything routed."""
        in_flight, self._in_flight = self._in_flight, None
        routed, self._unannounced = self._unannounced, {}  # if this fails, the input is re-read
        if in_flight is not None:
            await in_flight
        if routed:
            await asyncio.gather(*await self._heartbeat())
            await self.commit(routed)

    async def _commit_when_acked(
        self,
        previous: asyncio.Future[None] | None,
        sends: list[asyncio.Future[Any]],
        announced: dict[TopicPartition, int],
        started: float,
    ) -> None:
        if previous is not None:
            await previous  # commits go in order, and the announced records were in earlier sends
        await asyncio.gather(*sends)
        if sends:
            self.meter.observe(metrics.PRODUCE_SECONDS, time.perf_counter() - started, self.group)
        await self.commit(announced)
        if announced:
            failpoints.hit("ingest-committed")

    async def _send(
        self, batches: dict[TopicPartition, list[ConsumerRecord]]
    ) -> tuple[list[asyncio.Future[Any]], dict[TopicPartition, int]]:
        """Route and hand everything to the producer; returns the acknowledgement futures, and
        the offsets they make safe to commit: those routed before this call's heartbeat."""
        sends, announced = [], {}
        # Heartbeats go first: a shard must know every partition before data from any of them
        # can move its watermark, or a slow partition's events would be judged late.
        if time.monotonic() - self._last_heartbeat >= HEARTBEAT_S:
            sends.extend(await self._heartbeat())
            announced, self._unannounced = self._unannounced, {}
        self._unannounced.update(next_offsets(batches))
        for tp, records in batches.items():
            packed, invalid = self.router.route(tp.topic, tp.partition, records)
            for shard, value in packed:
                sends.append(await self.producer.send(topics.EVENTS, value, partition=shard))
            for doc in invalid:
                key = source_id(tp.topic, tp.partition).encode()
                sends.append(await self.producer.send(topics.INVALID, orjson.dumps(doc), key=key))
                self.meter.count(metrics.INVALID, 1, tp.topic, reason(doc["error"]))
            if invalid:  # one line per partition and batch, however many: the log stays short
                log.warning("ingest: %d invalid in %s/%s (first at offset %s: %s)", len(invalid),
                            tp.topic, tp.partition, invalid[0]["source_offset"],
                            invalid[0]["error"][:200])  # fmt: skip
            self.stats.add(events_in=len(records), invalid=len(invalid))
            self.meter.count(metrics.EVENTS_IN, len(records), tp.topic)
        return sends, announced

    async def _heartbeat(self) -> list[asyncio.Future]:
        self._last_heartbeat = now = time.monotonic()
        idle = {}
        for tp in self.consumer.assignment():
            source = self.router.sources.setdefault(source_id(tp.topic, tp.partition), Source())
            caught_up = self.consumer.highwater(tp) == await self.consumer.position(tp)
            quiet = now - source.last_record >= self.settings.idle_partition_s
            idle[source_id(tp.topic, tp.partition)] = caught_up and quiet
        if not idle:
            return []
        beat = self.router.heartbeat(idle)
        return [
            await self.producer.send(topics.EVENTS, beat, partition=shard)
            for shard in range(self.settings.shards)
        ]
