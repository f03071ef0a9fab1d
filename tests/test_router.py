"""Ingest routing: shard choice, packed messages with watermarks, invalid records, heartbeats."""

from __future__ import annotations

import base64
import re
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord

from herald.config import DEFAULT_RETRY
from herald.model.event import Event
from herald.model.packing import pack, unpack
from herald.model.topics import ACKS, DELIVERIES
from herald.streams.decode import decode
from herald.streams.ingest import CHUNK, Router, invalid_record, shard_of
from herald.streams.shard import Shard
from herald.tables.store import ShardStore
from tests.test_shard import MIN, T0, by_broadcast, counters, raw_event

SHARDS = 4


def record(topic: str, partition: int, offset: int, value: bytes | None) -> ConsumerRecord:
    return ConsumerRecord(
        topic=topic, partition=partition, offset=offset, timestamp=0, timestamp_type=0,
        key=None, value=value, checksum=None, serialized_key_size=-1,
        serialized_value_size=len(value or b""), headers=[],
    )  # fmt: skip


def records(topic: str, partition: int, values: Sequence[bytes | None]) -> list[ConsumerRecord]:
    return [record(topic, partition, offset, v) for offset, v in enumerate(values, 100)]


def test_shard_of_is_deterministic_and_in_range() -> None:
    for shards in (1, 3, 4, 64):
        for i in range(200):
            shard = shard_of("tenant", f"b{i}", shards)
            assert 0 <= shard < shards
            assert shard == shard_of("tenant", f"b{i}", shards)
    assert shard_of("acme", "launch", 8) == shard_of("acme", "launch", 8)


def test_shard_of_spreads_keys_evenly() -> None:
    spread = Counter(shard_of(f"t{i % 7}", f"broadcast-{i}", SHARDS) for i in range(4_000))
    assert set(spread) == set(range(SHARDS))
    assert all(800 <= n <= 1_200 for n in spread.values()), spread


def test_shard_of_separates_tenant_from_broadcast() -> None:
    """("ab", "c") and ("a", "bc") are different broadcasts and need not share a shard."""
    pairs = [(f"t{i}", f"x{i}") for i in range(50)]
    joined = [(f"t{i}x", f"{i}") for i in range(50)]
    assert [shard_of(*p, 64) for p in pairs] != [shard_of(*p, 64) for p in joined]


def test_route_packs_events_per_shard_in_chunks_with_the_prior_watermark() -> None:
    values = [
        raw_event(DELIVERIES, "delivered", T0 + i, broadcast=f"b{i % 2}") for i in range(6_000)
    ]
    router = Router(SHARDS)
    packed, invalid = router.route(DELIVERIES, 3, records(DELIVERIES, 3, values))
    assert invalid == []
    routed: dict[int, list[Event]] = {}
    for shard, value in packed:
        header, events = unpack(value)
        assert header == {"src": "deliveries/3", "wm": 0}  # nothing seen before this batch
        assert 0 < len(events) <= CHUNK
        routed.setdefault(shard, []).extend(events)
    # Every valid event exactly once, on its broadcast's shard, in input order.
    for shard, events in routed.items():
        assert all(shard_of(e.tenant_id, e.broadcast_id, SHARDS) == shard for e in events)
    expected: dict[int, list[Event]] = {}
    for value in values:
        event = decode(DELIVERIES, value)
        expected.setdefault(shard_of(event.tenant_id, event.broadcast_id, SHARDS), [])
        expected[shard_of(event.tenant_id, event.broadcast_id, SHARDS)].append(event)
    assert routed == expected
    assert max(map(len, expected.values())) > CHUNK  # the test did split a shard's events
    # The next batch carries the watermark this batch reached.
    later = [raw_event(DELIVERIES, "queued", T0 - MIN)]
    packed, _ = router.route(DELIVERIES, 3, records(DELIVERIES, 3, later))
    ((_, value),) = packed
    assert unpack(value)[0] == {"src": "deliveries/3", "wm": T0 + 5_999}
    assert router.sources["deliveries/3"].watermark == T0 + 5_999  # an older event: no change


def test_watermarks_are_per_partition() -> None:
    router = Router(SHARDS)
    router.route(DELIVERIES, 0, records(DELIVERIES, 0, [raw_event(DELIVERIES, "queued", T0)]))
    router.route(ACKS, 0, records(ACKS, 0, [raw_event(ACKS, "read", T0 + MIN)]))
    packed, _ = router.route(
        DELIVERIES, 1, records(DELIVERIES, 1, [raw_event(DELIVERIES, "queued", T0 + 2 * MIN)])
    )
    assert unpack(packed[0][1])[0] == {"src": "deliveries/1", "wm": 0}
    assert {name: s.watermark for name, s in router.sources.items()} == {
        "deliveries/0": T0, "acks/0": T0 + MIN, "deliveries/1": T0 + 2 * MIN,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("value", "field", "tenant"),
    [
        (raw_event(DELIVERIES, "delivered", T0, channel="fax"), "'channel'", "t1"),
        (raw_event(DELIVERIES, "delivered", T0, region=""), "'region'", "t1"),
        (raw_event(DELIVERIES, "delivered", T0, tenant="bad tenant"), "'tenant_id'", "bad tenant"),
        (raw_event(DELIVERIES, "bounced", T0, tenant="acme"), "'type'", "acme"),
        (b'{"tenant_id": "acme", "event_id": "e"}', "'schema_version'", "acme"),
        (b'{"tenant_id": "acme", "oops"', "JSON", ""),
        (b"\xff\xfe not utf-8", "UTF-8", ""),
        (b'["a", "list"]', "object", ""),
        (None, "no value", ""),
    ],
)
def test_invalid_records_keep_source_raw_bytes_and_a_readable_error(
    value: bytes | None, field: str, tenant: str
) -> None:
    router = Router(SHARDS)
    good = raw_event(DELIVERIES, "queued", T0)
    packed, invalid = router.route(DELIVERIES, 2, records(DELIVERIES, 2, [good, value, good]))
    (doc,) = invalid
    assert doc["source_topic"] == DELIVERIES
    assert doc["source_partition"] == 2
    assert doc["source_offset"] == 101
    assert base64.b64decode(doc["raw"]) == (value or b"")
    assert field in doc["error"], doc["error"]
    assert doc["tenant_id"] == tenant
    assert isinstance(doc["received_at"], int)
    assert sum(len(unpack(v)[1]) for _, v in packed) == 2  # the valid ones still go through


def test_invalid_record_tenant_hint_is_bounded() -> None:
    too_long = b'{"tenant_id": "' + b"t" * 65 + b'"}'
    doc = invalid_record(record(ACKS, 0, 7, too_long), "missing field 'event_id'")
    assert doc["tenant_id"] == ""
    assert doc["error"] == "missing field 'event_id'"
    assert doc["source_topic"] == ACKS and doc["source_offset"] == 7


def test_heartbeat_lists_every_partition_with_watermark_and_idleness() -> None:
    router = Router(SHARDS)
    router.route(DELIVERIES, 0, records(DELIVERIES, 0, [raw_event(DELIVERIES, "queued", T0)]))
    beat = router.heartbeat({"deliveries/0": False, "deliveries/1": True, "acks/2": False})
    header, events = unpack(beat)
    assert events == []
    assert header == {"hb": {
        "deliveries/0": [T0, False], "deliveries/1": [0, True], "acks/2": [0, False],
    }}  # fmt: skip
    assert set(router.sources) == {"deliveries/0", "deliveries/1", "acks/2"}


def test_routed_messages_feed_a_shard(tmp_path: Path) -> None:
    """Router and Shard agree on the message format: what ingest sends is what gets counted."""
    router = Router(1)
    values = [  # ten duplicates: the same bytes again
        raw_event(DELIVERIES, "delivered", T0 + i % 30, event_id=f"d{i % 30}") for i in range(40)
    ]
    beat = router.heartbeat({"deliveries/0": False})
    packed, _ = router.route(DELIVERIES, 0, records(DELIVERIES, 0, values))
    store = ShardStore(tmp_path / "shard")
    try:
        shard = Shard(0, store, 600, DEFAULT_RETRY)
        shard.apply(enumerate([beat] + [value for _, value in packed]))
        assert counters(shard, by_broadcast(T0)) == {"delivered": 30}
        assert shard.take_counts() == {"events_in": 40, "duplicates": 10, "late_dropped": 0}
        assert shard.watermarks.sources == {"deliveries/0": [T0 + 29, False]}
    finally:
        store.close()


def test_an_event_too_far_ahead_of_the_wall_clock_is_invalid_and_moves_no_watermark() -> None:
    """A bad clock or a far-future duplicate would push its partition's watermark ahead and
    close every window early; beyond HERALD_MAX_FUTURE_S it is refused with a clear reason."""
    now = int(time.time() * 1000)
    router = Router(SHARDS, max_future_s=900)
    values = [
        raw_event(DELIVERIES, "delivered", now + 10 * MIN),  # a skewed clock: accepted
        raw_event(DELIVERIES, "delivered", now + 24 * 60 * MIN),  # a day ahead: refused
    ]
    recs = records(DELIVERIES, 0, values)
    packed, invalid = router.route(DELIVERIES, 0, recs)
    assert sum(len(unpack(v)[1]) for _, v in packed) == 1
    (refused,) = invalid
    assert refused["source_offset"] == recs[1].offset
    assert re.fullmatch(
        r"occurred_at: \S+Z is 8\d{4} s ahead of the wall clock \(at most 900 s, "
        r"HERALD_MAX_FUTURE_S\)",
        refused["error"],
    ), refused["error"]
    assert router.sources["deliveries/0"].watermark == now + 10 * MIN


def test_an_accepted_future_event_closes_windows_early_within_the_cap(tmp_path: Path) -> None:
    """What the cap bounds: an event accepted ahead of the others moves its partition's
    watermark; once every partition is that far, earlier windows are final, and their late
    events are counted as dropped, never silently lost."""
    shard = Shard(0, ShardStore(tmp_path / "s"), 60, DEFAULT_RETRY)
    try:
        ahead = decode(DELIVERIES, raw_event(DELIVERIES, "queued", T0 + 15 * MIN))
        shard.apply([(0, pack({"src": "deliveries/0", "wm": T0}, [ahead]))])
        late = decode(DELIVERIES, raw_event(DELIVERIES, "delivered", T0 + 1_000))
        shard.apply([(1, pack({"src": "deliveries/0", "wm": ahead.ts}, [late]))])
        assert shard.take_counts()["late_dropped"] == 1
        assert by_broadcast(T0) not in shard.aggs
    finally:
        shard.store.close()
