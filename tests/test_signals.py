"""What a shard tells the escalation agents (SPEC §5), on a real RocksDB store: per-second
counts of the rules' inputs, the pending backlog's timers (in event time, whatever the
partitions' order, and across a restart), critical broadcasts (known late or early), and
the clock."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from herald.config import DEFAULT_RETRY, Escalations, TenantQuota
from herald.streams.shard import SIGNALS, Shard
from herald.tables.signals import FIELDS, Outgoing, Sender, partition_of
from herald.tables.store import Change, ShardStore
from tests.test_shard import B0, D0, D1, MIN, T0, Feed, ack, announce, delivery, msg

A0 = "acks/0"


class SignalFeed(Feed):
    """A shard fed batch by batch, and what its service would send after each."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.sender = Sender(1)

    def sent(self) -> list[dict[str, Any]]:
        shard = self.shard
        return self.sender.messages([(0, shard.offset or 0, shard.event_clock())], shard.signals)


@pytest.fixture
def feed(tmp_path: Path) -> SignalFeed:
    return SignalFeed(tmp_path / "shard")


def deltas(messages: list[dict[str, Any]], rule: str) -> Counter[tuple[Any, ...]]:
    """(subject..., second, which count) -> sum: the rule's deltas, summed."""
    out: Counter[tuple[Any, ...]] = Counter()
    width = len(FIELDS[rule])
    for message in messages:
        for *subject, seconds, counts in message["s"]:
            if subject[0] == rule:
                for second, second_counts in zip(seconds, counts, strict=True):
                    assert len(second_counts) == width
                    for i, n in enumerate(second_counts):
                        if n:
                            out[(*subject[1:], second, FIELDS[rule][i])] += n
    return out


def test_region_counts_dead_letters_and_the_clock(feed: SignalFeed) -> None:
    ts = T0 + 1500
    feed.batch(msg(D0, ts, [delivery("delivered", ts), delivery("failed", ts, attempt=1),
                            delivery("failed", ts + 1000, retryable=False)]))  # fmt: skip
    [message] = feed.sent()
    assert sorted(message["s"]) == [  # a row per subject, its seconds ascending
        ["dead_letter_spike", "t1", "push", [T0 + 2000], [[1]]],
        ["region_failure_rate", "t1", "DE", "push", [T0 + 1000, T0 + 2000], [[1, 1], [0, 1]]],
    ]
    assert message["clocks"] == {"0": ts + 1000}
    assert feed.sent() == []  # nothing new, the clock in the same second: nothing to send


def test_pending_counts_once_old_and_uncounts_when_resolved(feed: SignalFeed) -> None:
    old = 15 * MIN
    feed.batch(msg(D0, T0, [delivery("pending", T0, user_id="a"),
                            delivery("pending", T0, user_id="b")]))  # fmt: skip
    feed.batch(msg(D0, T0 + 5 * MIN, [delivery("delivered", T0 + 5 * MIN, user_id="a")]))
    assert deltas(feed.sent(), "pending_backlog") == Counter()  # a resolved young: never old
    feed.restart()  # the timer is state
    feed.batch(msg(D0, T0 + old, [delivery("queued", T0 + old, user_id="x")]))
    assert deltas(feed.sent(), "pending_backlog") == Counter(
        {("t1", "DE", T0 + old, "pending_old"): 1}
    )
    feed.batch(msg(D0, T0 + 20 * MIN, [delivery("delivered", T0 + 20 * MIN, user_id="b")]))
    assert deltas(feed.sent(), "pending_backlog") == Counter(
        {("t1", "DE", T0 + 20 * MIN, "pending_old"): -1}
    )


def test_the_stored_backlog_is_the_live_one_batch_after_batch(feed: SignalFeed) -> None:
    """Entries are written once per batch: one pending and resolved within a batch is never
    written, one stored then resolved and pending again within a batch is stored anew (and
    deleted if resolved again), and a restart from the store alone holds what the shard held."""
    feed.batch(msg(D0, T0, [delivery("pending", T0, user_id="a"),
                            delivery("pending", T0, user_id="b")]))  # fmt: skip
    feed.batch(msg(D0, T0 + MIN, [delivery("delivered", T0 + MIN, user_id="a"),
                                  delivery("pending", T0 + MIN, user_id="a"),
                                  delivery("pending", T0 + MIN, user_id="c"),
                                  delivery("delivered", T0 + MIN, user_id="c")]))  # fmt: skip
    assert feed.changelog[-1].count(b'"q[') == 1  # a again; c came and went: not written
    assert {key[2]: entry[0] for key, entry in feed.shard.backlog.entries.items()} == {
        "a": T0 + MIN, "b": T0}  # fmt: skip
    later = T0 + 2 * MIN
    feed.batch(msg(D0, later, [delivery("delivered", later, user_id="a"),
                               delivery("pending", later, user_id="a"),
                               delivery("delivered", later, user_id="a")]))  # fmt: skip
    live = dict(feed.shard.backlog.entries)
    assert [key[2] for key in live] == ["b"]
    feed.restart()
    assert feed.shard.backlog.entries == live


def test_a_resolution_seen_before_the_watermark_fired_the_timer_counts(feed: SignalFeed) -> None:
    """Partition 1 holds the watermark back; partition 0 already shows the delivery 20
    minutes later: it was old from minute 15 in event time, and is counted so."""
    feed.batch(msg(D1, T0, [delivery("queued", T0, user_id="slow")]),
               msg(D0, T0, [delivery("pending", T0, user_id="b")]))  # fmt: skip
    feed.batch(msg(D0, T0 + 20 * MIN, [delivery("delivered", T0 + 20 * MIN, user_id="b")]))
    assert deltas(feed.sent(), "pending_backlog") == Counter(
        {
            ("t1", "DE", T0 + 15 * MIN, "pending_old"): 1,
            ("t1", "DE", T0 + 20 * MIN, "pending_old"): -1,
        }
    )


def test_critical_broadcasts_send_their_timing_and_counts(feed: SignalFeed) -> None:
    fields = {"priority": "critical", "ack_deadline_s": 120, "channels": ["push"]}
    # Two deliveries before the lifecycle arrives (another topic), one read after.
    feed.batch(msg(D0, T0 + 1000, [delivery("delivered", T0 + 1000, user_id="a"),
                                   delivery("delivered", T0 + 1000, user_id="b")]))  # fmt: skip
    feed.batch(msg(B0, T0, [announce("sent", T0, **fields)]),
               msg(A0, T0 + 3000, [ack("read", T0 + 3000, user_id="a")]))  # fmt: skip
    messages = feed.sent()
    assert [b for m in messages for b in m["b"]] == [[0, "t1", "b1", T0, 120]]
    # The early deliveries come from the broadcast's window, at its start; the read exactly.
    assert deltas(messages, "critical_unread") == Counter(
        {("t1", "b1", T0, "delivered"): 2, ("t1", "b1", T0 + 3000, "read"): 1}
    )


def test_a_batch_applies_lifecycles_before_the_deliveries_it_holds(feed: SignalFeed) -> None:
    fields = {"priority": "high", "ack_deadline_s": 60, "channels": ["push"]}
    feed.batch(msg(D0, T0 + 1500, [delivery("delivered", T0 + 1500)]),
               msg(B0, T0, [announce("sent", T0, **fields)]))  # fmt: skip
    assert deltas(feed.sent(), "critical_unread") == Counter(
        {("t1", "b1", T0 + 1000, "delivered"): 1}
    )


def test_subjects_spread_over_partitions_by_a_stable_hash() -> None:
    """The same partition in every process (Python's own hash is salted per process), and
    an even spread."""
    assert partition_of(("region_failure_rate", "t1", "KR", "push"), 4) == 1
    spread = Counter(partition_of(("dead_letter_spike", f"t{i}", "sms"), 4) for i in range(4000))
    assert min(spread.values()) > 900


def test_shards_deltas_for_a_subject_and_second_go_as_one_row(tmp_path: Path) -> None:
    """Every shard sees every region: a service's shards share one `Outgoing`, and the agent
    gets one row per subject, one count per second summed over the shards (the seconds
    ascending, whichever shard saw which first), with each shard's offset and clock."""
    shared = Outgoing()
    shards = [Shard(n, ShardStore(tmp_path / str(n)), 600, DEFAULT_RETRY, signals=shared)
              for n in (3, 5)]  # fmt: skip
    for n, shard in enumerate(shards):
        dead = delivery("failed", T0 + 1000 * (1 - n), channel="sms", retryable=False,
                        event_id=f"dead{n}")  # fmt: skip
        shard.apply([(6 + 2 * n, msg(D0, T0, [delivery("delivered", T0 + 10, event_id=f"a{n}"),
                                              delivery("failed" if n else "delivered", T0 + 20,
                                                       event_id=f"b{n}"), dead]))])  # fmt: skip
    clocks = [(shard.id, shard.offset or 0, shard.event_clock()) for shard in shards]
    [message] = Sender(1).messages(clocks, shared)
    assert sorted(message["s"]) == [
        ["dead_letter_spike", "t1", "sms", [T0, T0 + 1000], [[1], [1]]],
        ["region_failure_rate", "t1", "DE", "push", [T0], [[3, 1]]],
        ["region_failure_rate", "t1", "DE", "sms", [T0, T0 + 1000], [[0, 1], [0, 1]]],
    ]
    assert message["offsets"] == {"3": 7, "5": 9}
    assert message["clocks"] == {"3": T0 + 1000, "5": T0 + 20}  # each its newest event
    assert shared.deltas == {}


def test_a_quota_counts_what_the_tenants_windows_count(tmp_path: Path) -> None:
    """Only tenants with a quota, and of theirs the deliveries and acks counted into windows
    (tenant_usage_1m sums the same counters): not a lifecycle event, a duplicate or an event
    past grace."""
    rules = Escalations(tenant_quota=TenantQuota(quotas={"t1": 100}))
    shard = Shard(0, ShardStore(tmp_path / "q"), 600, DEFAULT_RETRY, escalations=rules)
    late = T0 + 20 * MIN
    shard.apply([(0, msg(D0, T0, [delivery("queued", T0), delivery("queued", T0, tenant="t2"),
                                  ack("read", T0 + 500), announce("created", T0)])),
                 (1, msg(D0, late, [delivery("queued", late, event_id="again")])),
                 (2, msg(D0, late, [delivery("queued", T0 + 1000, event_id="too-late"),
                                    delivery("queued", late, event_id="again")]))])  # fmt: skip
    messages = Sender(1).messages([(0, 3, shard.event_clock())], shard.signals)
    assert deltas(messages, "tenant_quota") == Counter(
        {("t1", T0, "events"): 2, ("t1", late, "events"): 1}
    )
    assert shard.counts["late_dropped"] == 1 and shard.counts["duplicates"] == 1


def test_deltas_leave_with_their_poll_and_none_wait_in_the_state(feed: SignalFeed) -> None:
    """The service sends a poll's deltas in the transaction that commits its input: the
    shard's change holds none of them (rewriting them per batch was the cost), and a shard
    restarted from its store has nothing left to send."""
    change = feed.apply(msg(D0, T0, [delivery("failed", T0, retryable=False)]))
    assert SIGNALS not in change.puts
    feed.write(change)
    assert deltas(feed.sent(), "dead_letter_spike") == Counter(
        {("t1", "push", T0, "dead_letters"): 1}
    )
    feed.restart()
    assert deltas(feed.sent(), "dead_letter_spike") == Counter()


def test_deltas_an_earlier_version_kept_go_with_the_first_poll(feed: SignalFeed) -> None:
    """Before, unsent deltas waited in the state for the next snapshot: after an upgrade
    they are sent with the first poll, whose change forgets them."""
    stored = Change()
    stored.put(SIGNALS, [[["dead_letter_spike", "t1", "sms", T0, 3]], []])
    feed.write(stored)
    feed.restart()
    change = feed.apply(msg(D0, T0, [delivery("failed", T0, retryable=False)]))
    assert SIGNALS in change.deletes
    feed.write(change)
    assert deltas(feed.sent(), "dead_letter_spike") == Counter(
        {("t1", "sms", T0, "dead_letters"): 3, ("t1", "push", T0, "dead_letters"): 1}
    )
    feed.restart()
    assert deltas(feed.sent(), "dead_letter_spike") == Counter()


@pytest.mark.parametrize("enabled", [True, False])
def test_escalations_switched_off_keep_no_signals_and_count_the_same(
    tmp_path: Path, enabled: bool
) -> None:
    """`[escalations] enabled = false` (the off arm of `herald bench --ab escalations`):
    nothing for the agent, no backlog, the windows' counts unchanged."""
    rules = Escalations(enabled=enabled, tenant_quota=TenantQuota(quotas={"t1": 100}))
    shard = Shard(0, ShardStore(tmp_path / "s"), 600, DEFAULT_RETRY, escalations=rules)
    fields = {"priority": "critical", "ack_deadline_s": 120, "channels": ["push"]}
    later = T0 + 16 * MIN  # the pending delivery is old by then
    shard.apply([(0, msg(B0, T0, [announce("sent", T0, **fields)])),
                 (1, msg(D0, T0, [delivery("pending", T0, user_id="a"), delivery("delivered", T0),
                                  delivery("failed", T0, retryable=False)]))])  # fmt: skip
    shard.apply([(2, msg(D0, later, [delivery("delivered", later, user_id="b")]))])
    messages = Sender(1).messages([(0, 3, shard.event_clock())], shard.signals)
    rules_seen = {row[0] for message in messages for row in message["s"]}
    assert rules_seen == ({"region_failure_rate", "dead_letter_spike", "critical_unread",
                           "pending_backlog", "tenant_quota"} if enabled else set())  # fmt: skip
    assert bool(shard.backlog.entries) is enabled
    rows, _ = shard.snapshot()
    counts = sorted((r["window_start"], r["delivered"], r["failed"], r["pending"])
                    for r in rows["broadcast_stats_1m"])  # fmt: skip
    assert counts == [(T0 // 1000, 1, 1, 1), (later // 1000, 1, 0, 0)]
