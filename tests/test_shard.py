"""Shard.apply on a real RocksDB store: exact counts, dedup, lateness, retries, histograms,
time-to-read, lifecycles, crash recovery, changelog restore, snapshots (SPEC §4, §6).

Input is built as ingest builds it: events are `decode` of JSON bytes, packed with the
partition's watermark from before the batch; heartbeats carry [watermark, idle] per partition.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from herald.config import DEFAULT_RETRY
from herald.model.event import Event
from herald.model.packing import pack
from herald.model.topics import ACKS, BROADCASTS, DELIVERIES
from herald.sinks.migrations import MIGRATIONS
from herald.streams.decode import decode
from herald.streams.shard import Key, Shard, encode_key
from herald.tables import aggregates, histogram, lifecycle
from herald.tables.aggregates import COUNTERS
from herald.tables.dedup import identity, prefix
from herald.tables.store import Change, ShardStore
from herald.tables.windows import is_closed

T0 = int(datetime(2026, 11, 23, 10, 0, tzinfo=UTC).timestamp() * 1000)
MIN = 60_000
GRACE_S = 600
D0, D1, D2, A0, B0 = "deliveries/0", "deliveries/1", "deliveries/2", "acks/0", "broadcasts/0"

_ids = itertools.count()


def iso(ms: int) -> str:
    instant = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return instant.replace("+00:00", "Z")


def raw_event(topic: str, kind: str, ts: int, **fields: Any) -> bytes:
    """JSON bytes of a valid event; `tenant`, `broadcast`, `event_id` and any field override."""
    doc: dict[str, Any] = {
        "schema_version": 1,
        "type": kind,
        "tenant_id": fields.pop("tenant", "t1"),
        "broadcast_id": fields.pop("broadcast", "b1"),
        "event_id": fields.pop("event_id", f"e{next(_ids)}"),
        "occurred_at": iso(ts),
    }
    if topic != BROADCASTS:
        doc.update(user_id="u1", channel="push", region="DE")
    doc.update(fields)
    return orjson.dumps(doc)


def delivery(kind: str, ts: int, **fields: Any) -> Event:
    return decode(DELIVERIES, raw_event(DELIVERIES, kind, ts, **fields))


def ack(kind: str, ts: int, **fields: Any) -> Event:
    return decode(ACKS, raw_event(ACKS, kind, ts, **fields))


def announce(kind: str, ts: int, **fields: Any) -> Event:
    return decode(BROADCASTS, raw_event(BROADCASTS, kind, ts, **fields))


def msg(source: str, wm: int, events: list[Event]) -> bytes:
    return pack({"src": source, "wm": wm}, events)


def beat(sources: dict[str, tuple[int, bool]]) -> bytes:
    return pack({"hb": {name: [wm, idle] for name, (wm, idle) in sources.items()}})


def by_broadcast(ts: int, tenant: str = "t1", broadcast: str = "b1") -> Key:
    return ("b", tenant, broadcast, ts - ts % MIN)


def by_region(ts: int, tenant: str = "t1", region: str = "DE", channel: str = "push") -> Key:
    return ("r", tenant, region, channel, ts - ts % MIN)


class Feed:
    """One shard fed batch by batch as the service does: apply, then write the Change."""

    def __init__(self, path: Path, dedup_horizon_s: int = 86_400) -> None:
        self.path = path
        self.dedup_horizon_s = dedup_horizon_s
        self.offset = 0
        self.changelog: list[bytes] = []  # every written Change, encoded: the changelog topic
        self.shard = self.open()

    def open(self) -> Shard:
        return Shard(0, ShardStore(self.path), GRACE_S, DEFAULT_RETRY, self.dedup_horizon_s)

    def apply(self, *messages: bytes) -> Change:
        """Apply a batch at the next offsets without persisting it (a crash may follow)."""
        change = self.shard.apply(list(enumerate(messages, self.offset)))
        self.offset += len(messages)
        return change

    def write(self, change: Change) -> None:
        self.changelog.append(change.encode(change.serialised()))
        self.shard.store.write(change)

    def batch(self, *messages: bytes) -> dict[str, int]:
        """Apply and persist one batch; the shard's counts for it."""
        self.write(self.apply(*messages))
        return self.shard.take_counts()

    def publish(self) -> tuple[dict[str, list[dict[str, Any]]], set[bytes]]:
        rows, keys = self.shard.snapshot()
        self.shard.published(keys)
        self.write(self.shard.take_cleanup())
        return rows, keys

    def restart(self) -> None:
        """As after a crash: a new Shard from what the store holds."""
        self.shard.store.close()
        self.shard = self.open()
        self.offset = self.shard.offset or 0

    def close(self) -> None:
        self.shard.store.close()


@pytest.fixture
def feed(tmp_path: Path) -> Iterator[Feed]:
    fed = Feed(tmp_path / "shard")
    yield fed
    fed.close()


def counters(shard: Shard, key: Key) -> dict[str, int]:
    """The non-zero counters of a window aggregate."""
    row = aggregates.to_row(shard.aggs[key])
    return {name: row[name] for name in COUNTERS if row[name]}


def state(shard: Shard) -> dict[str, Any]:
    """Everything a shard must recover, as plain JSON values (tuples and lists alike)."""

    def plain(value: Any) -> Any:
        return orjson.loads(orjson.dumps(value))

    return {
        "aggs": {k: plain(v) for k, v in shard.aggs.items()},
        "lifecycles": {k: plain(v) for k, v in shard.lifecycles.items()},
        "unread": {k: plain(v) for k, v in shard.unread.items()},
        "watermarks": plain(shard.watermarks.sources),
        "table_watermark": shard.table_watermark,
        "offset": shard.offset,
        "dirty": set(shard.dirty),
        "closed": set(shard.closed),
    }


# -- counting ---------------------------------------------------------------------------------


def test_counts_per_broadcast_and_per_region_channel_minute(feed: Feed) -> None:
    kinds = ("queued", "attempted", "delivered", "pending", "expired")
    acks = ("received", "read", "clicked", "dismissed", "responded")
    deliveries, reads = [], []
    for i in range(120):
        where = {
            "tenant": ("t1", "t2")[i % 2],
            "broadcast": ("b1", "b2", "b3")[i % 3],
            "region": ("DE", "eu-west")[i // 7 % 2],
            "channel": ("push", "email", "sms")[i // 5 % 3],
        }
        ts = T0 + (i % 4) * MIN + i * 311
        deliveries.append(delivery(kinds[i % 5], ts, **where))
        reads.append(ack(acks[i % 5], ts + 7_000, **where))
    feed.batch(beat({D0: (T0, False), A0: (T0, False)}))
    counts = feed.batch(msg(D0, T0, deliveries[:70]), msg(A0, T0, reads))
    counts |= feed.batch(msg(D0, max(ev.ts for ev in deliveries[:70]), deliveries[70:]))

    expected: Counter[tuple[Key, str]] = Counter()
    for ev in deliveries + reads:
        start = ev.ts - ev.ts % MIN
        expected[("b", ev.tenant_id, ev.broadcast_id, start), ev.type] += 1
        expected[("r", ev.tenant_id, ev.region, ev.channel, start), ev.type] += 1
    windows = {key for key, _ in expected}
    assert set(feed.shard.aggs) == windows
    for key in windows:
        assert counters(feed.shard, key) == {k: n for (w, k), n in expected.items() if w == key}
    assert counts["late_dropped"] == 0 and counts["duplicates"] == 0
    # One by hand: t1/b1 gets i = 0, 6, ..., 114; minute 0 is i % 4 == 0: i = 0, 12, ..., 108
    # whose i % 5 runs 0, 2, 4, 1, 3 twice: two of every delivery and every ack type.
    assert counters(feed.shard, by_broadcast(T0)) == {
        "queued": 2, "attempted": 2, "delivered": 2, "pending": 2, "expired": 2,
        "received": 2, "read": 2, "clicked": 2, "dismissed": 2, "responded": 2,
    }  # fmt: skip


def test_duplicates_are_counted_once(feed: Feed) -> None:
    first = delivery("delivered", T0 + 1_000, event_id="x1")
    second = delivery("delivered", T0 + 2_000, event_id="x2")
    counts = feed.batch(
        msg(D0, T0, [first, second, first]),  # again in the same message
        msg(D1, T0, [second]),  # again in another message of the same batch
    )
    assert counts == {"events_in": 4, "duplicates": 2, "late_dropped": 0}
    other_tenant = delivery("delivered", T0 + 1_000, event_id="x1", tenant="t2")
    counts = feed.batch(msg(D0, T0 + 2_000, [first, other_tenant]))  # in a later batch
    assert counts == {"events_in": 2, "duplicates": 1, "late_dropped": 0}
    assert counters(feed.shard, by_broadcast(T0)) == {"delivered": 2}
    assert counters(feed.shard, by_region(T0)) == {"delivered": 2}
    assert counters(feed.shard, by_broadcast(T0, tenant="t2")) == {"delivered": 1}


def test_a_duplicate_under_another_type_or_topic_is_still_a_duplicate(feed: Feed) -> None:
    counts = feed.batch(
        msg(D0, T0, [delivery("delivered", T0, event_id="same")]),
        msg(A0, T0, [ack("read", T0, event_id="same")]),
    )
    assert counts["duplicates"] == 1
    assert counters(feed.shard, by_broadcast(T0)) == {"delivered": 1}


def test_a_duplicate_with_another_occurred_at_hour_is_counted_once(feed: Feed) -> None:
    before = delivery("delivered", T0 + 59 * MIN + 59_000, event_id="dup")
    after = delivery("delivered", T0 + 60 * MIN + 1_000, event_id="dup")  # next hour
    counts = feed.batch(msg(D0, T0, [before]), msg(D0, before.ts, [after]))
    assert counts["duplicates"] == 1
    total = sum(counters(feed.shard, key).get("delivered", 0) for key in feed.shard.aggs)
    assert total == 2  # one per key kind (broadcast, region): the event counted once


def _advance(feed: Feed, to_ms: int) -> None:
    """Traffic on the only feeding partition up to `to_ms`, one event per hour of event time."""
    wm = feed.shard.table_watermark or T0
    for ts in range(wm + 60 * MIN, to_ms + 1, 60 * MIN):
        feed.batch(msg(D0, wm, [delivery("queued", ts)]))
        wm = ts


@pytest.mark.parametrize("hours_later", [3, 20])
def test_a_duplicate_hours_later_inside_the_horizon_is_counted_once(
    feed: Feed, hours_later: int
) -> None:
    original = delivery("delivered", T0 + 1_000, event_id="late-dup")
    feed.batch(msg(D0, T0, [original]))
    _advance(feed, T0 + hours_later * 60 * MIN)
    counts = feed.batch(msg(D0, feed.shard.table_watermark or T0, [original]))
    assert counts == {"events_in": 1, "duplicates": 1, "late_dropped": 0}


def test_a_conflicting_duplicate_counts_as_a_duplicate_and_the_first_wins(feed: Feed) -> None:
    first = delivery("delivered", T0 + 1_000, event_id="c1", latency_ms=40)
    changed = delivery("failed", T0 + 2 * 60 * MIN, event_id="c1", region="FR", channel="sms")
    feed.batch(msg(D0, T0, [first]))
    _advance(feed, T0 + 2 * 60 * MIN)
    counts = feed.batch(msg(D0, feed.shard.table_watermark or T0, [changed]))
    assert counts["duplicates"] == 1
    assert counters(feed.shard, by_broadcast(T0)) == {"delivered": 1}
    assert not any(key[2] == "FR" for key in feed.shard.aggs if key[0] == "r")


def test_event_ids_expire_after_the_horizon_by_a_range_delete(tmp_path: Path) -> None:
    """Remembered for at least one horizon of event time and at most two (tables/dedup.py)."""
    horizon_h = 2
    feed = Feed(tmp_path / "s", dedup_horizon_s=horizon_h * 3600)
    try:
        original = delivery("delivered", T0 + 1_000, event_id="old")
        feed.batch(msg(D0, T0, [original]))
        _advance(feed, T0 + horizon_h * 60 * MIN)
        assert feed.batch(msg(D0, T0, [original]))["duplicates"] == 1  # one horizon on: kept
        _advance(feed, T0 + 3 * horizon_h * 60 * MIN)
        assert feed.shard.store.get_many([b"d%08x" % (T0 // (horizon_h * 3_600_000))
                                            + b"t1\x00old"]) == [None]  # fmt: skip
        assert feed.batch(msg(D0, T0, [original]))["duplicates"] == 0  # forgotten
        # The expiry is part of the change, so a store rebuilt from the changelog forgets too.
        restored = ShardStore(tmp_path / "restored")
        for record in feed.changelog:
            restored.write(Change.decode(record))
        assert list(restored.scan(b"d")) == list(feed.shard.store.scan(b"d"))
        restored.close()
    finally:
        feed.shard.store.close()


def test_late_events_are_dropped_by_the_min_watermark_out_of_order_counted(feed: Feed) -> None:
    feed.batch(beat({D0: (T0, False), D1: (T0, False)}))
    # deliveries/0 races ahead 21 minutes; deliveries/1 still at T0 holds the table back.
    feed.batch(msg(D0, T0, [delivery("delivered", T0 + 20 * MIN)]))
    feed.batch(msg(D0, T0 + 20 * MIN, [delivery("delivered", T0 + 21 * MIN)]))
    counts = feed.batch(msg(D1, T0, [delivery("delivered", T0 + 30_000)]))
    assert counts["late_dropped"] == 0
    assert feed.shard.table_watermark == T0 + 30_000
    # deliveries/1 catches up to 19 min: the table watermark is min(21, 19) = 19 min.
    feed.batch(msg(D1, T0 + 30_000, [delivery("delivered", T0 + 19 * MIN)]))
    assert feed.shard.table_watermark == T0 + 19 * MIN
    counts = feed.batch(
        msg(D1, T0 + 19 * MIN, [
            delivery("delivered", T0 + 10_000),  # window T0 closed at 11 min: late
            delivery("delivered", T0 + 8 * MIN + 59_999),  # closes at 19 min exactly: late
            delivery("delivered", T0 + 9 * MIN),  # closes at 20 min: out of order, counted
        ])
    )  # fmt: skip
    assert counts["late_dropped"] == 2
    assert counters(feed.shard, by_broadcast(T0)) == {"delivered": 1}
    assert by_broadcast(T0 + 8 * MIN) not in feed.shard.aggs
    assert counters(feed.shard, by_broadcast(T0 + 9 * MIN)) == {"delivered": 1}


def test_a_lagging_partition_never_moves_the_table_watermark_back(feed: Feed) -> None:
    feed.batch(msg(D0, T0, [delivery("delivered", T0 + 20 * MIN)]))
    feed.batch(msg(D0, T0 + 20 * MIN, []))
    assert feed.shard.table_watermark == T0 + 20 * MIN
    # A partition the shard never heard of appears far behind (watermark 0).
    counts = feed.batch(msg(D2, 0, [delivery("delivered", T0 + 5 * MIN)]))
    assert feed.shard.watermarks.current() == T0 + 5 * MIN
    assert feed.shard.table_watermark == T0 + 20 * MIN
    assert counts["late_dropped"] == 1
    assert by_broadcast(T0 + 5 * MIN) not in feed.shard.aggs


def test_an_idle_partition_stops_holding_windows_open(feed: Feed) -> None:
    feed.batch(beat({D0: (T0, False), D1: (T0, False)}))
    feed.batch(msg(D0, T0, [delivery("delivered", T0), delivery("delivered", T0 + 15 * MIN)]))
    assert feed.shard.table_watermark == T0
    assert not feed.shard.closed
    feed.batch(beat({D0: (T0 + 15 * MIN, False), D1: (T0, True)}))
    assert feed.shard.table_watermark == T0 + 15 * MIN
    assert feed.shard.closed == {by_broadcast(T0), by_region(T0)}


def test_failed_deliveries_split_into_retries_and_dead_letters(feed: Feed) -> None:
    assert {c: p.max_attempts for c, p in DEFAULT_RETRY.items()} == {
        "push": 5, "email": 8, "sms": 3, "sse": 5, "in_app": 5,
    }  # fmt: skip
    failures = [  # channel, attempt, retryable -> retried?
        ("push", 1, True, True),
        ("push", 4, True, True),
        ("push", 5, True, False),  # at max_attempts
        ("push", 1, False, False),  # not retryable
        ("sms", 2, True, True),
        ("sms", 3, True, False),
        ("email", 7, True, True),
        ("email", 8, True, False),
        ("sse", 5, True, False),
        ("in_app", 4, True, True),
    ]
    events = [
        delivery("failed", T0 + i, channel=ch, attempt=n, retryable=ok, error_code="E42")
        for i, (ch, n, ok, _) in enumerate(failures)
    ]
    feed.batch(msg(D0, T0, events))
    assert counters(feed.shard, by_broadcast(T0)) == {
        "failed": 10, "retries_scheduled": 5, "dead_lettered": 5,
    }  # fmt: skip
    for channel in ("push", "sms", "email", "sse", "in_app"):
        retried = [r for ch, _, _, r in failures if ch == channel]
        expected = {
            "failed": len(retried),
            "retries_scheduled": retried.count(True),
            "dead_lettered": retried.count(False),
        }
        got = counters(feed.shard, by_region(T0, channel=channel))
        assert got == {k: n for k, n in expected.items() if n}, channel


def test_latency_histogram_from_delivered_latency(feed: Feed) -> None:
    latencies = [12.0, 250, 250, 3_000, 0.4]
    events = [delivery("delivered", T0 + i, latency_ms=ms) for i, ms in enumerate(latencies)]
    events.append(delivery("delivered", T0 + 9))  # no latency: counted, not in the histogram
    events.append(delivery("failed", T0 + 10, latency_ms=99))  # latency means nothing here
    feed.batch(msg(D0, T0, events))
    expected = {histogram.bucket(12): 1, histogram.bucket(250): 2, histogram.bucket(3_000): 1,
                "0": 1}  # fmt: skip
    for key in (by_broadcast(T0), by_region(T0)):
        row = aggregates.to_row(feed.shard.aggs[key])
        assert row["delivered"] == 6
        assert row["delivery_latency_hist"] == expected
        assert row["time_to_read_hist"] == {}


# -- time to read and lifecycles --------------------------------------------------------------


def time_to_read(shard: Shard, ts: int, **where: str) -> list[Any]:
    """The time-to-read histograms of the broadcast and region windows of a read at `ts`."""
    return [
        aggregates.to_row(shard.aggs[key])["time_to_read_hist"]
        for key in (by_broadcast(ts, **where), by_region(ts))
    ]


def test_time_to_read_is_read_minus_sent(feed: Feed) -> None:
    feed.batch(msg(B0, T0, [announce("created", T0), announce("sent", T0 + 5_000)]))
    feed.batch(msg(A0, T0, [ack("read", T0 + 65_000), ack("read", T0 + 65_000 + 3_600_000)]))
    assert time_to_read(feed.shard, T0 + 65_000) == [{histogram.bucket(60_000): 1}] * 2
    later = T0 + 65_000 + 3_600_000
    assert time_to_read(feed.shard, later) == [{histogram.bucket(3_660_000): 1}] * 2


def test_a_read_before_its_sent_event_waits_for_it(feed: Feed) -> None:
    feed.batch(msg(A0, T0, [ack("read", T0 + 40_000, broadcast="b2")]))
    assert time_to_read(feed.shard, T0 + 40_000, broadcast="b2") == [{}, {}]
    assert feed.shard.unread
    feed.batch(msg(B0, T0, [announce("sent", T0 + 10_000, broadcast="b2")]))
    assert (
        time_to_read(feed.shard, T0 + 40_000, broadcast="b2") == [{histogram.bucket(30_000): 1}] * 2
    )
    assert not feed.shard.unread
    assert not list(feed.shard.store.scan(b"p"))  # the buffer is gone from the store too


def test_a_buffered_read_survives_a_restart(feed: Feed) -> None:
    feed.batch(msg(A0, T0, [ack("read", T0 + 40_000)]))
    feed.restart()
    assert feed.shard.unread
    feed.batch(msg(B0, T0, [announce("sent", T0 + 20_000)]))
    assert time_to_read(feed.shard, T0 + 40_000) == [{histogram.bucket(20_000): 1}] * 2


DESCRIBED = {"priority": "high", "channels": ["push", "email"], "target_count": 100,
             "title": "Hello", "ack_deadline_s": 300, "content_format": "markdown",
             "targeting": {"mode": "segment", "segment": "beta"}}  # fmt: skip
LIFECYCLE = [
    ("created", T0, DESCRIBED),
    ("scheduled", T0 + MIN, {}),
    ("sent", T0 + 2 * MIN, {}),
    ("updated", T0 + 3 * MIN, {**DESCRIBED, "priority": "critical", "target_count": 120,
                               "title": "Hello again"}),
    ("sent", T0 + 4 * MIN, {}),  # sent again: sent_at stays the first time
    ("completed", T0 + 10 * MIN, {}),
]  # fmt: skip
LIFECYCLE_ROW = {
    "tenant_id": "t1", "broadcast_id": "b1", "status": "completed", "priority": "critical",
    "channels": ["push", "email"], "target_count": 120, "targeting_mode": "segment",
    "segment": "beta", "content_format": "markdown", "language": "en", "ack_deadline_s": 300,
    "expires_at": None, "title": "Hello again", "created_at": T0, "scheduled_at": T0 + MIN,
    "sent_at": T0 + 2 * MIN, "completed_at": T0 + 10 * MIN, "cancelled_at": None,
}  # fmt: skip


def fold(events: list[Event] | tuple[Event, ...]) -> dict[str, Any]:
    folded = lifecycle.new("t1", "b1")
    for ev in events:
        lifecycle.apply(folded, ev)
    return lifecycle.to_row(folded)


def test_lifecycle_is_independent_of_arrival_order() -> None:
    events = [announce(kind, ts, **fields) for kind, ts, fields in LIFECYCLE]
    for order in itertools.permutations(events):
        assert fold(order) == LIFECYCLE_ROW, [ev.type for ev in order]


def test_shard_lifecycle_rows_in_either_order(tmp_path: Path) -> None:
    events = [announce(kind, ts, **fields) for kind, ts, fields in LIFECYCLE]
    for name, order in (("forward", events), ("backward", events[::-1])):
        fed = Feed(tmp_path / name)
        try:
            fed.batch(*[msg(B0, 0, [ev]) for ev in order])
            rows, _ = fed.shard.snapshot()
            (row,) = rows["broadcasts"]
            assert {k: v for k, v in row.items() if k in LIFECYCLE_ROW} == LIFECYCLE_ROW
        finally:
            fed.close()


def test_lifecycle_status_with_equal_event_times_is_independent_of_order() -> None:
    created = announce("created", T0, priority="high")
    sent = announce("sent", T0)
    assert fold([created, sent]) == fold([sent, created])


def test_lifecycle_partial_update_is_independent_of_order() -> None:
    created = announce("created", T0, **DESCRIBED)
    updated = announce("updated", T0 + MIN, title="Hello again")
    assert fold([created, updated]) == fold([updated, created])


def test_an_update_leaving_fields_out_keeps_them() -> None:
    created = announce("created", T0, priority="critical", language="de")
    updated = announce("updated", T0 + MIN, title="Hello again")
    row = fold([created, updated])
    assert (row["priority"], row["language"], row["title"]) == ("critical", "de", "Hello again")
    bare = fold([announce("created", T0)])
    assert (bare["priority"], bare["language"]) == ("normal", "en")  # SPEC's defaults


# -- persistence ------------------------------------------------------------------------------


def busy_batches() -> list[list[bytes]]:
    """Three batches touching every kind of state: windows open and closed, a late event,
    duplicates, a lifecycle, a read waiting for its `sent`, watermarks of three topics."""
    sent = announce("sent", T0 + 1_000)
    early_read = ack("read", T0 + 30_000, broadcast="b9")
    first = delivery("delivered", T0 + 2_000, latency_ms=80)
    return [
        [
            beat({D0: (T0, False), A0: (T0, False)}),
            msg(B0, T0, [announce("created", T0, priority="high"), sent]),
            msg(D0, T0, [first, delivery("failed", T0 + 3_000, attempt=5), first]),
        ],
        [
            msg(A0, T0, [ack("read", T0 + 61_000), early_read]),
            msg(D0, T0 + 3_000, [delivery("queued", T0 + 14 * MIN)]),
        ],
        [
            msg(A0, T0 + 61_000, [ack("clicked", T0 + 13 * MIN, action_id="ok")]),
            msg(D0, T0 + 14 * MIN, [delivery("delivered", T0 + 5_000), first]),  # late, dup
            msg(D0, T0 + 14 * MIN, [delivery("attempted", T0 + 14 * MIN + 1)]),
        ],
    ]


def test_restart_restores_identical_state(feed: Feed) -> None:
    for batch in busy_batches():
        feed.batch(*batch)
    before = state(feed.shard)
    assert before["unread"] and before["lifecycles"] and before["closed"]
    assert before["offset"] == 8
    feed.restart()
    assert state(feed.shard) == before


def test_a_batch_replayed_after_restart_is_not_counted_twice(feed: Feed) -> None:
    batches = busy_batches()
    for batch in batches:
        feed.batch(*batch)
    before = state(feed.shard)
    feed.restart()
    feed.offset -= len(batches[-1])  # the input is read again from the last batch
    counts = feed.batch(*batches[-1])
    assert counts == {"events_in": 4, "duplicates": 4, "late_dropped": 0}
    assert state(feed.shard) == before


def test_a_batch_lost_in_a_crash_is_applied_once_after_restart(tmp_path: Path) -> None:
    batches = busy_batches()
    reference = Feed(tmp_path / "reference")
    crashed = Feed(tmp_path / "crashed")
    try:
        for batch in batches:
            reference.batch(*batch)
        crashed.batch(*batches[0])
        crashed.batch(*batches[1])
        crashed.apply(*batches[2])  # applied in memory, never written
        crashed.restart()
        assert crashed.offset == 5
        crashed.batch(*batches[2])
        assert state(crashed.shard) == state(reference.shard)
    finally:
        reference.close()
        crashed.close()


def test_changelog_restores_the_same_state_in_a_fresh_store(feed: Feed, tmp_path: Path) -> None:
    for batch in busy_batches():
        feed.batch(*batch)
    feed.publish()
    feed.batch(msg(D0, T0 + 14 * MIN, [delivery("pending", T0 + 14 * MIN + 2)]))
    restored_store = ShardStore(tmp_path / "restored")
    try:
        for record in feed.changelog:
            restored_store.write(Change.decode(record))
        restored = Shard(0, restored_store, GRACE_S, DEFAULT_RETRY)
        assert state(restored) == state(feed.shard)
    finally:
        restored_store.close()


def test_change_encode_decode_round_trip() -> None:
    change = Change()
    change.put(b"moffset", 12)
    change.put(prefix(7) + identity("t1", "e\u20ac\u0000"), 3)  # dedup keys: a NUL, any UTF-8
    change.delete_range(b"d", prefix(6))
    change.put(b"a" + orjson.dumps(["b", "t1", "b1", T0]), aggregates.new())
    change.delete(b"x" + orjson.dumps(["b", "t1", "b0", T0]))
    decoded = Change.decode(change.encode(change.serialised()))
    assert decoded.serialised() == change.serialised()
    assert decoded.deletes == change.deletes
    assert decoded.ranges == change.ranges


# -- snapshots --------------------------------------------------------------------------------


def table_columns(table: str) -> set[str]:
    """Column names of a table as the migrations create it."""
    pattern = rf"CREATE TABLE IF NOT EXISTS {table} \((.*?)\n\) ENGINE"
    columns: set[str] = set()
    for migration in MIGRATIONS:
        found = re.search(pattern, migration.sql, re.S)
        if found:
            columns |= {line.split()[0] for line in found.group(1).strip().splitlines()}
        elif re.match(rf"\s*ALTER TABLE {table}\b", migration.sql):
            columns |= set(re.findall(r"ADD COLUMN IF NOT EXISTS (\w+)", migration.sql))
    assert columns, f"no migration creates {table}"
    return columns


def test_snapshot_rows_for_exactly_the_changed_keys(feed: Feed) -> None:
    for batch in busy_batches():
        feed.batch(*batch)
    shard = feed.shard
    rows, keys = shard.snapshot()
    expected_keys = {encode_key(b"a", k) for k in shard.aggs}
    expected_keys |= {encode_key(b"l", k) for k in shard.lifecycles}
    assert keys - set(shard.followups.outbox) == expected_keys == shard.dirty
    assert sum(map(len, rows.values())) == len(keys)
    for table, table_rows in rows.items():
        assert all(set(row) == table_columns(table) for row in table_rows), table
        assert all(row["version"] == shard.offset == 8 for row in table_rows)
    # The table watermark is 13 min (acks/0): windows of minute 0 and 1 are past grace.
    assert shard.table_watermark == T0 + 13 * MIN
    for row in rows["broadcast_stats_1m"] + rows["region_stats_1m"]:
        start_ms = row["window_start"] * 1000
        assert row["is_final"] == int(start_ms < T0 + 2 * MIN), row
        assert row["is_final"] == is_closed(start_ms, shard.table_watermark, GRACE_S * 1000)
    minute0 = next(
        r
        for r in rows["broadcast_stats_1m"]
        if r["window_start"] * 1000 == T0 and r["broadcast_id"] == "b1"
    )
    assert {c: minute0[c] for c in COUNTERS if minute0[c]} == {
        "delivered": 1, "failed": 1, "dead_lettered": 1,  # push attempt 5: dead letter
    }  # fmt: skip
    (lifecycle_row,) = rows["broadcasts"]
    assert lifecycle_row["status"] == "sent" and lifecycle_row["sent_at"] == T0 + 1_000


def test_published_drops_closed_windows_and_clears_marks(feed: Feed) -> None:
    for batch in busy_batches():
        feed.batch(*batch)
    closed = set(feed.shard.closed)
    assert closed == {
        by_broadcast(T0), by_broadcast(T0, broadcast="b9"), by_region(T0),
        by_broadcast(T0 + MIN), by_region(T0 + MIN),
    }  # fmt: skip
    feed.publish()
    shard = feed.shard
    assert not shard.dirty and not shard.closed
    assert closed.isdisjoint(shard.aggs)
    assert {k for k, _ in shard.store.scan(b"a")} == {encode_key(b"a", k) for k in shard.aggs}
    assert not list(shard.store.scan(b"x"))
    assert shard.snapshot() == ({}, set())
    feed.restart()  # closed windows do not come back from the store
    assert closed.isdisjoint(feed.shard.aggs) and not feed.shard.dirty
    # A new event marks exactly its two windows.
    feed.batch(msg(D0, T0 + 14 * MIN, [delivery("delivered", T0 + 14 * MIN + 5)]))
    rows, keys = feed.shard.snapshot()
    window = T0 + 14 * MIN
    assert keys == {encode_key(b"a", by_broadcast(window)), encode_key(b"a", by_region(window))}
    assert [r["delivered"] for r in rows["broadcast_stats_1m"]] == [1]
    assert rows["region_stats_1m"][0]["version"] == feed.shard.offset == 9
