"""What a shard tells the escalation agents (SPEC §5), on a real RocksDB store: per-second
counts of the rules' inputs, the pending backlog's timers (in event time, whatever the
partitions' order, and across a restart), critical broadcasts (known late or early), and
the clock."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from herald.tables.signals import FIELDS, partition_of
from tests.test_shard import B0, D0, D1, MIN, T0, Feed, ack, announce, delivery, msg

A0 = "acks/0"


@pytest.fixture
def feed(tmp_path: Path) -> Feed:
    return Feed(tmp_path / "shard")


def sent(feed: Feed, partitions: int = 1) -> list[dict[str, Any]]:
    """The signal messages the shard would send now, one partition."""
    return feed.shard.signals.messages(0, feed.shard.offset or 0, feed.shard.event_clock(),
                                       partitions)  # fmt: skip


def deltas(messages: list[dict[str, Any]], rule: str) -> Counter[tuple[Any, ...]]:
    """(subject..., second, which count) -> sum: the rule's deltas, summed."""
    out: Counter[tuple[Any, ...]] = Counter()
    width = len(FIELDS[rule])
    for message in messages:
        for row in message["d"]:
            if row[0] == rule:
                for i, n in enumerate(row[-width:]):
                    if n:
                        out[(*row[1:-width], FIELDS[rule][i])] += n
    return out


def test_region_counts_dead_letters_and_the_clock(feed: Feed) -> None:
    ts = T0 + 1500
    feed.batch(msg(D0, ts, [delivery("delivered", ts), delivery("failed", ts, attempt=1),
                            delivery("failed", ts + 1000, retryable=False)]))  # fmt: skip
    [message] = sent(feed)
    assert sorted(message["d"]) == sorted([
        ["region_failure_rate", "t1", "DE", "push", T0 + 1000, 1, 1],
        ["region_failure_rate", "t1", "DE", "push", T0 + 2000, 0, 1],
        ["dead_letter_spike", "t1", "push", T0 + 2000, 1],
    ])  # fmt: skip
    assert message["clock"] == ts + 1000
    assert sent(feed) == []  # nothing new, the clock in the same second: nothing to send


def test_pending_counts_once_old_and_uncounts_when_resolved(feed: Feed) -> None:
    old = 15 * MIN
    feed.batch(msg(D0, T0, [delivery("pending", T0, user_id="a"),
                            delivery("pending", T0, user_id="b")]))  # fmt: skip
    feed.batch(msg(D0, T0 + 5 * MIN, [delivery("delivered", T0 + 5 * MIN, user_id="a")]))
    assert deltas(sent(feed), "pending_backlog") == Counter()  # a resolved young: never old
    feed.restart()  # the timer is state
    feed.batch(msg(D0, T0 + old, [delivery("queued", T0 + old, user_id="x")]))
    assert deltas(sent(feed), "pending_backlog") == Counter(
        {("t1", "DE", T0 + old, "pending_old"): 1}
    )
    feed.batch(msg(D0, T0 + 20 * MIN, [delivery("delivered", T0 + 20 * MIN, user_id="b")]))
    assert deltas(sent(feed), "pending_backlog") == Counter(
        {("t1", "DE", T0 + 20 * MIN, "pending_old"): -1}
    )


def test_a_resolution_seen_before_the_watermark_fired_the_timer_still_counts(feed: Feed) -> None:
    """Partition 1 holds the watermark back; partition 0 already shows the delivery 20
    minutes later: it was old from minute 15 in event time, and is counted so."""
    feed.batch(msg(D1, T0, [delivery("queued", T0, user_id="slow")]),
               msg(D0, T0, [delivery("pending", T0, user_id="b")]))  # fmt: skip
    feed.batch(msg(D0, T0 + 20 * MIN, [delivery("delivered", T0 + 20 * MIN, user_id="b")]))
    assert deltas(sent(feed), "pending_backlog") == Counter(
        {
            ("t1", "DE", T0 + 15 * MIN, "pending_old"): 1,
            ("t1", "DE", T0 + 20 * MIN, "pending_old"): -1,
        }
    )


def test_critical_broadcasts_send_their_timing_and_counts(feed: Feed) -> None:
    fields = {"priority": "critical", "ack_deadline_s": 120, "channels": ["push"]}
    # Two deliveries before the lifecycle arrives (another topic), one read after.
    feed.batch(msg(D0, T0 + 1000, [delivery("delivered", T0 + 1000, user_id="a"),
                                   delivery("delivered", T0 + 1000, user_id="b")]))  # fmt: skip
    feed.batch(msg(B0, T0, [announce("sent", T0, **fields)]),
               msg(A0, T0 + 3000, [ack("read", T0 + 3000, user_id="a")]))  # fmt: skip
    messages = sent(feed)
    assert [b for m in messages for b in m["b"]] == [["t1", "b1", T0, 120]]
    # The early deliveries come from the broadcast's window, at its start; the read exactly.
    assert deltas(messages, "critical_unread") == Counter(
        {("t1", "b1", T0, "delivered"): 2, ("t1", "b1", T0 + 3000, "read"): 1}
    )


def test_a_batch_applies_lifecycles_before_the_deliveries_it_holds(feed: Feed) -> None:
    fields = {"priority": "high", "ack_deadline_s": 60, "channels": ["push"]}
    feed.batch(msg(D0, T0 + 1500, [delivery("delivered", T0 + 1500)]),
               msg(B0, T0, [announce("sent", T0, **fields)]))  # fmt: skip
    assert deltas(sent(feed), "critical_unread") == Counter(
        {("t1", "b1", T0 + 1000, "delivered"): 1}
    )


def test_subjects_spread_over_partitions_by_a_stable_hash() -> None:
    """The same partition in every process (Python's own hash is salted per process), and
    an even spread."""
    assert partition_of(("region_failure_rate", "t1", "KR", "push"), 4) == 1
    spread = Counter(partition_of(("dead_letter_spike", f"t{i}", "sms"), 4) for i in range(4000))
    assert min(spread.values()) > 900
