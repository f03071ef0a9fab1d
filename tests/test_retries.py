"""Retries and dead letters (SPEC §3) on a real RocksDB store: backoff, ids, timers that fire on
event time and the wall clock, cancellation, dead letters with history, restarts, pacing."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from herald.config import DEFAULT_RETRY
from herald.model.topics import DEADLETTER, RETRIES
from herald.streams.shard import Shard
from herald.tables.retries import backoff_ms, followup_id
from herald.tables.store import Change, ShardStore
from tests.test_shard import D0, MIN, T0, Feed, beat, delivery, msg

WHO = {"user_id": "u1", "channel": "push", "region": "DE"}
RECIPIENT = ("t1", "b1", "u1", "push")


@pytest.fixture
def feed(tmp_path: Path) -> Feed:
    return Feed(tmp_path / "shard")


def failed(ts: int, attempt: int = 1, retryable: bool = True, error: str = "timeout") -> bytes:
    return msg(D0, ts, [delivery("failed", ts, attempt=attempt, retryable=retryable,
                                 error_code=error, **WHO)])  # fmt: skip


def at(ts: int, kind: str = "queued", **fields: object) -> bytes:
    """An event that moves deliveries/0 (the only feeding partition) to `ts`."""
    return msg(D0, ts, [delivery(kind, ts, **{**WHO, "user_id": "other", **fields})])


def published(feed: Feed) -> list[tuple[str, dict[str, object]]]:
    _, keys = feed.shard.snapshot()
    messages = [(topic, orjson.loads(value)) for topic, _, value in feed.shard.messages(keys)]
    feed.shard.published(keys)
    feed.write(feed.shard.take_cleanup())
    return messages


def outcomes(feed: Feed) -> dict[str, str]:
    return {f.id: f.outcome for f in feed.shard.followups.outbox.values()}


@pytest.mark.parametrize("channel", sorted(DEFAULT_RETRY))
def test_backoff_is_equal_jitter_within_the_policy_and_deterministic(channel: str) -> None:
    policy = DEFAULT_RETRY[channel]
    for attempt in range(1, policy.max_attempts):
        delay_ms = min(policy.cap_s, policy.base_s * 2 ** (attempt - 1)) * 1000
        spread = set()
        for user in range(200):
            rid = followup_id("retry", ("t", "b", f"u{user}", channel), attempt + 1)
            d = backoff_ms(policy, attempt, rid)
            assert 0.5 * delay_ms <= d <= delay_ms
            assert backoff_ms(policy, attempt, rid) == d
            spread.add(d)
        assert len(spread) > 150  # jittered, not one value


def test_ids_are_deterministic_and_distinct_per_kind_and_attempt() -> None:
    assert followup_id("retry", RECIPIENT, 2) == followup_id("retry", RECIPIENT, 2)
    ids = {followup_id(k, RECIPIENT, a) for k in ("retry", "deadletter") for a in range(1, 6)}
    assert len(ids) == 10


def test_a_retry_fires_once_the_watermark_passes_due(feed: Feed) -> None:
    feed.batch(failed(T0))
    (fact,) = feed.shard.followups.outbox.values()
    rid = followup_id("retry", RECIPIENT, 2)
    assert (fact.id, fact.attempt, fact.outcome) == (rid, 2, "scheduled")
    due = fact.due_ms
    assert due is not None and T0 + 15_000 <= due <= T0 + 30_000  # push: base 30 s
    assert published(feed) == []  # a scheduled retry is a row, not yet a message
    feed.batch(at(due - 1))
    assert published(feed) == []
    feed.batch(at(due))
    ((topic, message),) = published(feed)
    assert topic == RETRIES
    assert message == {"retry_id": rid, "tenant_id": "t1", "broadcast_id": "b1", "user_id": "u1",
                       "channel": "push", "region": "DE", "attempt": 2,
                       "due_at": message["due_at"], "last_error": "timeout",
                       "occurred_at": "2026-11-23T10:00:00.000Z"}  # fmt: skip
    feed.batch(at(due + 10 * MIN))
    assert published(feed) == []  # once


def test_a_delivery_or_a_later_attempt_before_due_cancels(feed: Feed) -> None:
    feed.batch(failed(T0))
    feed.batch(msg(D0, T0, [delivery("delivered", T0 + 5_000, attempt=1, **WHO)]))
    assert set(outcomes(feed).values()) == {"cancelled"}
    feed.batch(at(T0 + 10 * MIN))
    assert published(feed) == []
    assert feed.shard.followups.followups == {}  # settled: nothing kept
    other = {**WHO, "user_id": "u2"}
    feed.batch(msg(D0, T0 + 10 * MIN, [delivery("failed", T0 + 10 * MIN, attempt=1, **other)]))
    feed.batch(msg(D0, T0 + 10 * MIN, [delivery("attempted", T0 + 10 * MIN + 1_000, attempt=2,
                                                **other)]))  # fmt: skip
    assert list(outcomes(feed).values())[-1] == "cancelled"


def test_a_delivery_after_due_does_not_cancel(feed: Feed) -> None:
    feed.batch(failed(T0))
    due = next(iter(feed.shard.followups.outbox.values())).due_ms
    assert due is not None
    # Out of order: the delivery (after due) arrives before the watermark reached due.
    feed.batch(msg(D0, T0, [delivery("delivered", due + 1_000, attempt=2, **WHO)]))
    assert set(outcomes(feed).values()) == {"published"}


def test_dead_letters_carry_the_attempt_history(feed: Feed) -> None:
    feed.batch(failed(T0, error="unsubscribed", retryable=False))
    ((topic, letter),) = published(feed)
    assert topic == DEADLETTER
    assert letter["deadletter_id"] == followup_id("deadletter", RECIPIENT, 1)
    assert letter["history"] == [{"attempt": 1, "occurred_at": "2026-11-23T10:00:00.000Z",
                                  "error_code": "unsubscribed"}]  # fmt: skip
    # sms: 3 attempts at most; the third failure is final and lists all three.
    sms = {**WHO, "user_id": "u3", "channel": "sms"}
    for attempt in (1, 2, 3):
        ts = T0 + attempt * 60 * MIN
        feed.batch(msg(D0, ts, [delivery("failed", ts, attempt=attempt, error_code="timeout",
                                         **sms)]))  # fmt: skip
    letters = [m for t, m in published(feed) if t == DEADLETTER]
    assert [h["attempt"] for h in letters[-1]["history"]] == [1, 2, 3]
    assert feed.shard.followups.followups == {}


def test_timers_are_state_they_fire_after_a_restart_and_from_the_changelog(
    feed: Feed, tmp_path: Path
) -> None:
    feed.batch(failed(T0))
    published(feed)
    feed.shard.store.close()
    feed.shard = feed.open()  # a restart: the heap is rebuilt from the store
    feed.batch(at(T0 + 10 * MIN))
    assert [t for t, _ in published(feed)] == [RETRIES]
    restored = ShardStore(tmp_path / "restored")
    for record in feed.changelog:
        restored.write(Change.decode(record))
    again = Shard(0, restored, 600, DEFAULT_RETRY)
    assert again.followups.followups == feed.shard.followups.followups
    assert again.followups.outbox == feed.shard.followups.outbox == {}
    restored.close()


def test_with_every_partition_idle_the_wall_clock_fires_retries(feed: Feed) -> None:
    feed.batch(beat({D0: (T0, False)}), failed(T0))
    feed.batch(beat({D0: (T0, False)}))
    assert published(feed) == []  # the watermark (T0) holds it
    feed.batch(beat({D0: (T0, True)}))  # caught up and quiet: event time follows the clock
    assert [t for t, _ in published(feed)] == [RETRIES]


def test_retries_that_came_due_together_leave_at_the_configured_pace(tmp_path: Path) -> None:
    store = ShardStore(tmp_path / "s")
    shard = Shard(0, store, 600, DEFAULT_RETRY, retry_rate_per_s=5)
    try:
        events = [delivery("failed", T0, attempt=1, **{**WHO, "user_id": f"u{i}"})
                  for i in range(20)]  # fmt: skip
        store.write(shard.apply([(0, msg(D0, T0, events))]))
        store.write(shard.apply([(1, at(T0 + 60 * MIN))]))
        fired = [f for f in shard.followups.outbox.values() if f.outcome == "published"]
        assert len(fired) == 5
    finally:
        store.close()
