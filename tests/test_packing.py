"""Packed `herald.events` messages: what shards decode, and what the sink hands to ClickHouse."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from clickhouse_connect.driver import Client

from herald.model import topics
from herald.model.event import Event
from herald.model.packing import event_rows, pack, unpack
from herald.sinks.service import Batch, write_batch
from herald.streams.decode import decode
from tests.harness import migrated_chdb

HEADER = {"src": "deliveries/0", "wm": 0}


def delivery(i: int) -> Event:
    raw = {"tenant_id": "acme", "event_id": f"e{i}", "broadcast_id": "b1",
           "occurred_at": f"2026-11-23T10:00:00.{i:03d}Z", "schema_version": 1,
           "type": "delivered", "user_id": 'u, "x"', "channel": "push", "region": "eu",
           "latency_ms": 5}  # fmt: skip
    return decode(topics.DELIVERIES, orjson.dumps(raw))


def record(offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord(topics.EVENTS, 0, offset, 0, 0, None, value, None, 0, len(value), ())


def test_unpack_returns_header_and_events() -> None:
    events = [delivery(i) for i in range(3)]
    assert unpack(pack(HEADER, events)) == (HEADER, events)


def test_heartbeat_has_no_events() -> None:
    beat = pack({"hb": {"deliveries/0": [5, True]}})
    assert unpack(beat) == ({"hb": {"deliveries/0": [5, True]}}, [])
    assert event_rows(beat) == b""


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with migrated_chdb(tmp_path_factory.mktemp("clickhouse")) as client:
        yield client


def test_sink_inserts_the_events_of_several_messages(ch: Client) -> None:
    events = [delivery(i) for i in range(5)]
    batch = Batch()
    batch.add(topics.EVENTS, [record(0, pack(HEADER, events[:2])),
                              record(1, pack({"hb": {}})),
                              record(2, pack(HEADER, events[2:]))])  # fmt: skip
    write_batch(ch, batch)
    stored = ch.query("SELECT event_id, user_id, latency_ms FROM events_raw ORDER BY event_id")
    assert stored.result_rows == [(f"e{i}", 'u, "x"', 5.0) for i in range(5)]


def test_events_raw_keeps_event_time_and_what_only_broadcasts_carry(ch: Client) -> None:
    sent = decode(topics.BROADCASTS, orjson.dumps({
        "tenant_id": "acme", "event_id": "bc-1", "broadcast_id": "b9", "schema_version": 1,
        "occurred_at": "2026-11-23T11:00:00.250+01:00", "type": "sent", "title": "Storm",
    }))  # fmt: skip
    failed = decode(topics.DELIVERIES, orjson.dumps({
        "tenant_id": "acme", "event_id": "f-1", "broadcast_id": "b9", "schema_version": 1,
        "occurred_at": "2026-11-23T10:00:01Z", "type": "failed", "user_id": "u",
        "channel": "sms", "region": "DE", "attempt": 70000, "retryable": False,
    }))  # fmt: skip
    batch = Batch()
    batch.add(topics.EVENTS, [record(0, pack(HEADER, [sent, failed]))])
    write_batch(ch, batch)
    rows = ch.query(
        "SELECT event_id, toUnixTimestamp64Milli(occurred_at), attempt, retryable,"
        " JSONExtractString(payload, 'title'), user_id"
        " FROM events_raw FINAL WHERE broadcast_id = 'b9' ORDER BY event_id"
    ).result_rows
    ten_am = 1_795_428_000_000
    assert rows == [
        ("bc-1", ten_am + 250, 0, None, "Storm", ""),
        ("f-1", ten_am + 1000, 70000, False, "", "u"),
    ]
