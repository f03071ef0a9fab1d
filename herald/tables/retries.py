"""Retries and dead letters (SPEC §3), as pure state: what one delivery event does to the
follow-up of its (tenant, broadcast, user, channel), and when a scheduled retry is due.

A recipient-channel in trouble has one `Followup`: the attempts seen (bounded), and its
pending retries (usually one; a later failure may come before an earlier retry fired, in
arrival order). A retryable failure below the channel's `max_attempts` schedules the next
attempt at `due = failure time + d`, `d in [0.5, 1] * min(cap, base * 2^(attempt-1))`, the
jitter taken from a hash of the retry's id, so a replay gives the same `due`. A `delivered`
event, or a later attempt, before `due` cancels it; anything else fails for good. Stored as
compact lists (facts, not documents) and turned into messages and rows only when published.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from herald.config import RetryPolicy
from herald.model import topics
from herald.model.event import Event, rfc3339
from herald.tables.store import Change, ShardStore

HISTORY = 10  # attempts kept per recipient-channel (the latest)
Recipient = tuple[str, str, str, str]  # tenant, broadcast, user, channel


def followup_id(kind: str, recipient: Recipient, attempt: int) -> str:
    """Deterministic: the same failure gives the same id. `kind` is "retry" (`attempt` is the
    one the retry starts) or "deadletter" (the attempt that failed for good)."""
    text = "\x00".join((kind, *recipient, str(attempt)))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def backoff_ms(policy: RetryPolicy, failed_attempt: int, rid: str) -> int:
    """Equal jitter: half the capped exponential delay, plus up to half again from the id."""
    delay_s = min(policy.cap_s, policy.base_s * 2 ** (failed_attempt - 1))
    unit = int(rid[:8], 16) / 0xFFFFFFFF
    return int(delay_s * (0.5 + 0.5 * unit) * 1000)


@dataclass
class Followup:
    """One recipient-channel's failures: [[attempt, ms, error], ...] and its pending retries."""

    region: str
    history: list[list[Any]] = field(default_factory=list)
    # [retry_id, next attempt, due ms, failure ms, last error] per scheduled retry
    pending: list[list[Any]] = field(default_factory=list)
    closed: bool = False  # delivered or dead-lettered: gone once nothing is pending

    def to_state(self) -> list[Any]:
        return [self.region, self.history, self.pending, self.closed]

    @classmethod
    def from_state(cls, state: list[Any]) -> Followup:
        return cls(*state)


@dataclass
class Outcome:
    """What one event did: a retry scheduled, one cancelled, a dead letter (each or none)."""

    scheduled: list[Any] | None = None
    cancelled: list[list[Any]] = field(default_factory=list)
    dead_letter: bool = False


def recipient(ev: Event) -> Recipient:
    return (ev.tenant_id, ev.broadcast_id, ev.user_id or "", ev.channel or "")


def apply(followup: Followup, ev: Event, policy: RetryPolicy | None) -> Outcome:
    """Fold one delivery event of this recipient-channel in (events of any type)."""
    outcome = Outcome()
    if followup.pending:
        for pending in followup.pending:
            if ev.ts < pending[2] and _supersedes(ev, pending[1]):
                outcome.cancelled.append(pending)
        followup.pending = [p for p in followup.pending if p not in outcome.cancelled]
    if ev.type == "delivered":
        followup.closed = True
        return outcome
    if ev.type != "failed":
        return outcome
    attempt = ev.attempt or 1
    followup.history = [*followup.history, [attempt, ev.ts, ev.error_code or ""]][-HISTORY:]
    if ev.retryable and policy is not None and attempt < policy.max_attempts:
        rid = followup_id("retry", recipient(ev), attempt + 1)
        due = ev.ts + backoff_ms(policy, attempt, rid)
        outcome.scheduled = [rid, attempt + 1, due, ev.ts, ev.error_code or ""]
        followup.pending = [*followup.pending, outcome.scheduled]
    else:
        outcome.dead_letter = followup.closed = True
    return outcome


def _supersedes(ev: Event, next_attempt: int) -> bool:
    """A delivery, or an attempt at or past the one the retry would start, makes it moot."""
    return ev.type == "delivered" or (ev.type in ("attempted", "failed")
                                      and (ev.attempt or 1) >= next_attempt)  # fmt: skip


FOLLOWUP, OUTBOX = b"f", b"o"


class Fact(NamedTuple):
    """One outbox entry, stored as a JSON array and rendered into a message and a row only
    when published. `outcome`: scheduled | published | cancelled | deadletter."""

    kind: str  # retry | deadletter
    id: str
    tenant_id: str
    broadcast_id: str
    user_id: str
    channel: str
    region: str
    attempt: int
    due_ms: int | None
    failed_ms: int
    error: str
    history: list[list[Any]]
    outcome: str


class FollowupTable:
    """A shard's follow-ups, retry timers (a heap by due time) and outbox, backed by its store.

    Timers are state, not in-memory timers: each pending retry is part of its follow-up, which
    a batch's `Change` writes to RocksDB and the changelog, so a restarted or moved shard fires
    them too. The heap is rebuilt from the follow-ups on load; an entry whose retry was
    cancelled meanwhile is skipped when it comes up.
    """

    def __init__(self, store: ShardStore, policies: dict[str, RetryPolicy]) -> None:
        self.policies = policies
        self.followups = {tuple(orjson.loads(k[1:])): Followup.from_state(v)
                          for k, v in store.scan(FOLLOWUP)}  # fmt: skip
        self.timers = [(p[2], p[0], key) for key, f in self.followups.items() for p in f.pending]
        heapq.heapify(self.timers)
        self.outbox = {k: Fact(*v) for k, v in store.scan(OUTBOX)}
        self._touched: set[Recipient] = set()

    def observe(self, ev: Event, key: Recipient, change: Change) -> None:
        """A counted (deduplicated, on time) delivery event of recipient-channel `key`."""
        followup = self.followups.get(key)
        if followup is None:
            if ev.type != "failed":
                return  # the common case: a recipient nothing is pending for
            followup = self.followups[key] = Followup(ev.region or "")
        outcome = apply(followup, ev, self.policies.get(ev.channel or ""))
        for cancelled in outcome.cancelled:
            self._emit(change, "retry", key, followup, cancelled, "cancelled")
        if outcome.scheduled:
            heapq.heappush(self.timers, (outcome.scheduled[2], outcome.scheduled[0], key))
            self._emit(change, "retry", key, followup, outcome.scheduled, "scheduled")
        if outcome.dead_letter:
            self._emit(change, "deadletter", key, followup, None, "deadletter")
        self._settle(key, followup, change)

    def fire(self, clock_ms: int, budget: int, change: Change) -> int:
        """Publish pending retries due by `clock_ms`, at most `budget`; returns how many."""
        fired = 0
        while self.timers and self.timers[0][0] <= clock_ms and fired < budget:
            _, rid, key = heapq.heappop(self.timers)
            followup = self.followups.get(key)
            due = [p for p in followup.pending if p[0] == rid] if followup else []
            if not followup or not due:
                continue  # cancelled meanwhile
            followup.pending = [p for p in followup.pending if p[0] != rid]
            self._emit(change, "retry", key, followup, due[0], "published")
            self._settle(key, followup, change)
            fired += 1
        return fired

    def _settle(self, key: Recipient, followup: Followup, change: Change) -> None:
        """Keep a follow-up while it can still matter; forget it once closed and idle."""
        if followup.closed and not followup.pending:
            del self.followups[key]
            self._touched.discard(key)
            change.delete(_encode(FOLLOWUP, key))
        else:
            self._touched.add(key)

    def persist(self, change: Change) -> None:
        for key in self._touched:
            change.put(_encode(FOLLOWUP, key), self.followups[key].to_state())
        self._touched.clear()

    def _emit(self, change: Change, kind: str, key: Recipient, followup: Followup,
              pending: list[Any] | None, outcome: str) -> None:  # fmt: skip
        if pending is None:  # a dead letter: the attempt that failed for good
            attempt, failed_ms, error = followup.history[-1]
            fid, due = followup_id(kind, key, attempt), None
        else:
            fid, attempt, due, failed_ms, error = pending
        fact = Fact(kind, fid, *key, followup.region, attempt, due, failed_ms, error,
                    followup.history, outcome)  # fmt: skip
        okey = OUTBOX + kind.encode() + b":" + fid.encode()
        self.outbox[okey] = fact
        change.put(okey, list(fact))

    def take_outbox(self) -> dict[bytes, Fact]:
        """What to publish now (the outbox stays until `published`)."""
        return dict(self.outbox)

    def published(self, keys: Iterable[bytes], cleanup: Change) -> None:
        for okey in keys:
            self.outbox.pop(okey, None)
            cleanup.delete(okey)


def _encode(prefix: bytes, key: Recipient) -> bytes:
    return prefix + orjson.dumps(key)


def fact_row(fact: Fact, version: int) -> dict[str, Any]:
    """The `delivery_retries` row of an outbox fact (one row per id, its latest outcome)."""
    return {"kind": fact.kind, "retry_id": fact.id, **_recipient(fact), "due_at": fact.due_ms,
            "last_error": fact.error, "occurred_at": fact.failed_ms,
            "history": _history(fact.history), "outcome": fact.outcome,
            "version": version}  # fmt: skip


def fact_message(fact: Fact) -> tuple[str, bytes, bytes] | None:
    """(topic, key, value) for a fact others act on: a published retry or a dead letter."""
    if fact.outcome == "published":
        doc = {"retry_id": fact.id, **_recipient(fact), "due_at": rfc3339(fact.due_ms or 0),
               "last_error": fact.error, "occurred_at": rfc3339(fact.failed_ms)}  # fmt: skip
        return topics.RETRIES, fact.id.encode(), orjson.dumps(doc)
    if fact.outcome == "deadletter":
        doc = {"deadletter_id": fact.id, **_recipient(fact), "error_code": fact.error,
               "occurred_at": rfc3339(fact.failed_ms),
               "history": _history(fact.history)}  # fmt: skip
        return topics.DEADLETTER, fact.id.encode(), orjson.dumps(doc)
    return None


def _recipient(fact: Fact) -> dict[str, Any]:
    return {"tenant_id": fact.tenant_id, "broadcast_id": fact.broadcast_id,
            "user_id": fact.user_id, "channel": fact.channel, "region": fact.region,
            "attempt": fact.attempt}  # fmt: skip


def _history(history: list[list[Any]]) -> list[dict[str, Any]]:
    return [{"attempt": a, "occurred_at": rfc3339(ms), "error_code": e} for a, ms, e in history]
