"""One aggregation shard: a partition of `herald.events` and the state it owns.

`apply` folds a batch of packed messages into the shard's windows and returns the `Change` to
persist; nothing here does I/O except through the store, so the logic is testable on its own.
Per batch: one multi-get for dedup, then per event a few dict operations — this is the hot path.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import orjson

from herald.config import Escalations, RetryPolicy
from herald.model.event import Event
from herald.model.packing import unpack
from herald.model.topics import ACKS, BROADCASTS, DELIVERIES
from herald.tables import aggregates, lifecycle, retries
from herald.tables.backlog import SIGNALLED, Backlog
from herald.tables.dedup import GENERATIONS, Generations, identity
from herald.tables.reach import Recipients
from herald.tables.retries import FollowupTable
from herald.tables.signals import Outgoing
from herald.tables.store import OFFSET, WATERMARKS, Change, ShardStore
from herald.tables.watermarks import Watermarks
from herald.tables.windows import is_closed, window_start

Key = tuple[Any, ...]
TABLE_WATERMARK = b"mtable_watermark"
SIGNALS = b"msignals"


def encode_key(prefix: bytes, key: Key) -> bytes:
    return prefix + orjson.dumps(key)


class Shard:
    """In-memory view of a shard's live state, backed by its ShardStore."""

    def __init__(
        self,
        shard_id: int,
        store: ShardStore,
        grace_s: int,
        retry: dict[str, RetryPolicy],
        dedup_horizon_s: int = 86_400,
        retry_rate_per_s: float = 2000,
        escalations: Escalations | None = None,
        reach_horizon_s: int | None = 7 * 86_400,
        signals: Outgoing | None = None,
    ) -> None:
        self.id = shard_id
        self.store = store
        self.grace_ms = grace_s * 1000
        self.retry = retry
        self.offset: int | None = store.meta(OFFSET)
        self.watermarks = Watermarks((DELIVERIES, ACKS), store.meta(WATERMARKS) or {})
        self.table_watermark: int | None = store.meta(TABLE_WATERMARK)
        self.dedup = Generations(dedup_horizon_s * 1000, store.meta(GENERATIONS))
        self.aggs = {key: aggregates.upgrade(agg) for key, agg in store.load(b"a").items()}
        # None: distinct recipients switched off (HERALD_REACH=false).
        self.reach = None if reach_horizon_s is None else Recipients(store, reach_horizon_s)
        self.lifecycles: dict[Key, dict[str, Any]] = store.load(b"l")
        self.unread: dict[Key, list[list[Any]]] = store.load(b"p")
        self.dirty: set[bytes] = {k[1:] for k, _ in store.scan(b"x")}
        self.windows: dict[int, set[Key]] = defaultdict(set)
        for key in self.aggs:
            self.windows[key[-1]].add(key)
        self.closed: set[Key] = set()
        # (prefix, key) of values a batch changed, persisted once at its end: a hot window is
        # updated thousands of times per batch, and encoding its key each time would dominate.
        self._touched: set[tuple[bytes, Key]] = set()
        self.counts = {"events_in": 0, "duplicates": 0, "late_dropped": 0}
        self._cleanup = Change()
        self.followups = FollowupTable(store, retry)
        # Retries come due in bursts after an outage: at most this many per second leave.
        self.retry_rate_per_s = retry_rate_per_s
        self._retry_budget, self._budget_at = retry_rate_per_s, time.monotonic()
        rules = escalations or Escalations()
        self.escalating = rules.enabled
        # What the escalation agent learns, sent with the poll that made it (one Outgoing for
        # a service's shards); deltas an earlier version stored go with the first poll.
        self.signals = Outgoing() if signals is None else signals
        self._forget_stored_signals = self.signals.restore(shard_id, store.meta(SIGNALS))
        self.backlog = Backlog(store, rules.pending_backlog.older_than_s)
        # Only these tenants are counted, and only these broadcasts watched for reads. A
        # quota meters the deliveries and acks a tenant's windows count (deduplicated, on
        # time): the same events region_stats_1m holds, so tenant_usage_1m agrees with it.
        metering = self.escalating and rules.tenant_quota.enabled
        self.quotas = frozenset(rules.tenant_quota.quotas if metering else ())
        self.critical = {
            key for key, state in self.lifecycles.items() if self.escalating and _critical(state)
        }
        self._close_windows()

    # -- applying input -------------------------------------------------------------------

    def apply(self, records: Iterable[tuple[int, bytes]]) -> Change:
        """Fold (offset, packed message) pairs in offset order; return what to persist."""
        change = Change()
        messages = [(offset, *unpack(value)) for offset, value in records]
        # Lifecycles first (a stable sort): a batch's deliveries and reads then meet their
        # broadcast already known, critical or not, whatever the order of the input topics.
        messages.sort(key=lambda m: not m[1].get("src", "").startswith(BROADCASTS))
        events = [ev for _, _, evs in messages for ev in evs]
        self._roll_dedup(change, events)
        ids = [identity(ev.tenant_id, ev.event_id) for ev in events]
        seen = self._seen(ids)
        reach = self.reach.keys(events) if self.reach else [None] * len(events)
        fresh = self.dedup.current() if events else b""
        new_ids: set[bytes] = set()
        position = 0
        for offset, header, evs in messages:
            self.offset = max(self.offset or 0, offset + 1)
            if "hb" in header:
                for source, (watermark, idle) in header["hb"].items():
                    self.watermarks.observe(source, watermark, idle)
                continue
            source = header["src"]
            self.watermarks.observe(source, header["wm"])
            watermark = self._table_watermark()
            for ev in evs:
                event_id = ids[position]
                if seen[position] or event_id in new_ids:
                    self.counts["duplicates"] += 1
                else:
                    new_ids.add(event_id)
                    change.put(fresh + event_id, offset)
                    self._count(ev, watermark, change, reach[position])
                    self.watermarks.advance(source, ev.ts)
                position += 1
        self.counts["events_in"] += len(events)
        self._table_watermark()
        self._fire_retries(change)
        clock = self.event_clock()
        if clock is not None and self.escalating:
            self.backlog.fire(clock, self.signals)
        self._persist_touched(change)
        self.followups.persist(change)
        self.backlog.persist(change)
        if self.reach:
            self.reach.persist(change, self.table_watermark)
        self._close_windows()
        if self._forget_stored_signals:
            change.delete(SIGNALS)
            self._forget_stored_signals = False
        change.put(OFFSET, self.offset)
        change.put(WATERMARKS, self.watermarks.sources)
        change.put(TABLE_WATERMARK, self.table_watermark)
        return change

    def _roll_dedup(self, change: Change, events: list[Event]) -> None:
        """Enter the table watermark's dedup generation; expire what fell out of the horizon.
        Before any feeding partition has a watermark, the batch's newest event time stands in:
        ids then land in a generation no older than their own events, never expiring early."""
        clock = self.table_watermark
        if clock is None:
            if not events:
                return
            clock = max(ev.ts for ev in events)
        expired_below = self.dedup.roll(clock)
        if expired_below is not None:
            change.delete_range(b"d", expired_below)
        change.put(GENERATIONS, self.dedup.live)

    def _seen(self, ids: list[bytes]) -> list[bool]:
        """Whether each (tenant, event id) was seen in a live generation: one multi-get."""
        prefixes = self.dedup.prefixes()
        found = self.store.get_many([p + event_id for p in prefixes for event_id in ids])
        if len(prefixes) == 1:
            return [value is not None for value in found]
        n = len(ids)
        return [a is not None or b is not None for a, b in zip(found[:n], found[n:], strict=True)]

    def _table_watermark(self) -> int | None:
        """Monotonic: a partition that reappears behind must not reopen a closed window."""
        current = self.watermarks.current()
        if current is not None and (self.table_watermark is None or current > self.table_watermark):
            self.table_watermark = current
        return self.table_watermark

    def _count(self, ev: Event, watermark: int | None, change: Change,
               reach_key: bytes | None) -> None:  # fmt: skip
        topic = ev.topic
        if topic == BROADCASTS:
            self._apply_lifecycle(ev, change)
            return
        start = window_start(ev.ts)
        if is_closed(start, watermark, self.grace_ms):
            self.counts["late_dropped"] += 1
            return
        tenant = ev.tenant_id
        if tenant in self.quotas:  # what the tenant's windows count (tenant_usage_1m's events)
            self.signals.add(("tenant_quota", tenant), ev.ts, 1)
        by_broadcast = ("b", tenant, ev.broadcast_id, start)
        by_region = ("r", tenant, ev.region, ev.channel, start)
        for key in (by_broadcast, by_region):
            aggregates.apply(self._agg(key), ev, self.retry)
            self._touched.add((b"a", key))
        if reach_key is not None:
            self._reach(ev, reach_key, by_broadcast, by_region)
        if topic == DELIVERIES:
            recipient = retries.recipient(ev)
            self.followups.observe(ev, recipient, change)
            if self.escalating and ev.type in SIGNALLED:
                self._delivery_signals(ev, recipient)
        elif ev.type == "read":
            self._time_to_read(ev, (by_broadcast, by_region), change)
            if (tenant, ev.broadcast_id) in self.critical:
                self.signals.add(("critical_unread", tenant, ev.broadcast_id), ev.ts, 0, 1)

    def _reach(self, ev: Event, key: bytes, by_broadcast: Key, by_region: Key) -> None:
        """A delivery or read: a new recipient of the broadcast, of its channel, or neither."""
        assert self.reach is not None
        first, on_channel = self.reach.mark(ev, key)
        if on_channel:
            aggregates.add_recipient(self.aggs[by_broadcast], ev.type, ev.channel or "", first)
            aggregates.add_recipient(self.aggs[by_region], ev.type, None, True)

    def _delivery_signals(self, ev: Event, recipient: retries.Recipient) -> None:
        """The counts escalation rules read: region failures, dead letters, the backlog."""
        kind, tenant = ev.type, ev.tenant_id
        if kind == "delivered":
            self.signals.attempt(tenant, ev.region or "", ev.channel or "", ev.ts, 0)
            if self.critical and (tenant, ev.broadcast_id) in self.critical:
                self.signals.add(("critical_unread", tenant, ev.broadcast_id), ev.ts, 1, 0)
        elif kind == "failed":
            self.signals.attempt(tenant, ev.region or "", ev.channel or "", ev.ts, 1)
            if aggregates.retry_outcome(ev, self.retry) == aggregates.DEAD_LETTERED:
                self.signals.add(("dead_letter_spike", tenant, ev.channel or ""), ev.ts, 1)
        if kind == "pending" or recipient in self.backlog.entries:  # most are neither
            self.backlog.observe(ev, recipient, self.signals)

    def event_clock(self) -> int | None:
        """Event time for escalations: the table watermark, or the wall clock once every
        input partition is idle and caught up (a quiet stream still escalates)."""
        if self.watermarks.all_idle():
            return max(int(time.time() * 1000), self.table_watermark or 0)
        return self.table_watermark

    def _fire_retries(self, change: Change) -> None:
        """Publish retries whose due time both the wall clock and the table watermark passed
        (SPEC §3); with every input partition idle and caught up, event time is the clock."""
        now = int(time.time() * 1000)
        if self.watermarks.all_idle():
            clock = now
        elif self.table_watermark is None:
            return
        else:
            clock = min(now, self.table_watermark)
        elapsed = time.monotonic() - self._budget_at
        self._budget_at += elapsed
        budget = min(self.retry_rate_per_s, self._retry_budget + elapsed * self.retry_rate_per_s)
        self._retry_budget = budget - self.followups.fire(clock, int(budget), change)

    def _agg(self, key: Key) -> aggregates.Aggregate:
        agg = self.aggs.get(key)
        if agg is None:
            agg = self.aggs[key] = aggregates.new()
            self.windows[key[-1]].add(key)
        return agg

    def _persist_touched(self, change: Change) -> None:
        """Put every value the batch changed, marked changed until published."""
        for prefix, key in self._touched:
            encoded = encode_key(prefix, key)
            change.put(encoded, self.aggs[key] if prefix == b"a" else self.lifecycles[key])
            if encoded not in self.dirty:
                self.dirty.add(encoded)
                change.put(b"x" + encoded, 1)
        self._touched.clear()

    # -- lifecycle and time-to-read -------------------------------------------------------

    def _apply_lifecycle(self, ev: Event, change: Change) -> None:
        key = (ev.tenant_id, ev.broadcast_id)
        state = self.lifecycles.get(key)
        if state is None:
            state = self.lifecycles[key] = lifecycle.new(*key)
        lifecycle.apply(state, ev)
        self._touched.add((b"l", key))
        if self.escalating and _critical(state):
            if key not in self.critical:
                self.critical.add(key)
                self._backfill_critical(key)
            self.signals.broadcast(self.id, *key, state["sent_at"], state["ack_deadline_s"])
        elif key in self.critical:
            self.critical.discard(key)
            self.signals.broadcast(self.id, *key, None, None)
        if state["sent_at"] is not None and key in self.unread:
            self._flush_unread(key, state["sent_at"], change)

    def _backfill_critical(self, broadcast: Key) -> None:
        """Deliveries and reads counted before the broadcast was known to be critical (its
        lifecycle comes through another topic, whose partition may be read a little later):
        from its live windows, each at its window's start. The deadline check stays exact
        while the lifecycle arrives before the window holding the deadline is counted."""
        delivered, read = aggregates.INDEX["delivered"], aggregates.INDEX["read"]
        for start in self.windows:
            agg = self.aggs.get(("b", *broadcast, start))
            if agg is not None and (agg[delivered] or agg[read]):
                self.signals.add(("critical_unread", *broadcast), start, agg[delivered], agg[read])

    def _time_to_read(self, ev: Event, keys: tuple[Key, Key], change: Change) -> None:
        """Read time minus the broadcast's sent time; reads seen before `sent` wait for it."""
        broadcast = (ev.tenant_id, ev.broadcast_id)
        state = self.lifecycles.get(broadcast)
        sent_at = state["sent_at"] if state else None
        if sent_at is None:
            self.unread.setdefault(broadcast, []).append([ev.ts, *keys])
            change.put(encode_key(b"p", broadcast), self.unread[broadcast])
            return
        for key in keys:
            aggregates.add_time_to_read(self.aggs[key], max(ev.ts - sent_at, 0))

    def _flush_unread(self, broadcast: Key, sent_at: int, change: Change) -> None:
        for read_ts, *keys in self.unread.pop(broadcast):
            for key in map(tuple, keys):
                if key in self.aggs:  # a window already final keeps what it had
                    aggregates.add_time_to_read(self.aggs[key], max(read_ts - sent_at, 0))
                    self._touched.add((b"a", key))
        change.delete(encode_key(b"p", broadcast))

    # -- windows closing and snapshots ----------------------------------------------------

    def _close_windows(self) -> None:
        for start in [s for s in self.windows if is_closed(s, self.table_watermark, self.grace_ms)]:
            for key in self.windows.pop(start):
                self.closed.add(key)
                self.dirty.add(encode_key(b"a", key))

    def snapshot(self) -> tuple[dict[str, list[dict[str, Any]]], set[bytes]]:
        """Rows for every changed key (full values, not deltas) by table, and those keys."""
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        now_ms = int(time.time() * 1000)
        outbox = self.followups.take_outbox()
        for fact in outbox.values():
            rows["delivery_retries"].append(retries.fact_row(fact, self.offset or 0))
        keys = set(self.dirty)
        for encoded in keys:
            prefix, key = encoded[:1], tuple(orjson.loads(encoded[1:]))
            if prefix == b"l":
                row = lifecycle.to_row(self.lifecycles[key])
                table = "broadcasts"
            else:
                row, table = self._stats_row(key)
            row["version"] = self.offset or 0
            row["updated_at"] = now_ms
            rows[table].append(row)
        return rows, keys | set(outbox)

    def messages(self, keys: Iterable[bytes]) -> list[tuple[str, bytes, bytes]]:
        """Retries and dead letters among the snapshot's keys, as (topic, key, value)."""
        facts = (self.followups.outbox[k] for k in keys if k in self.followups.outbox)
        return [m for m in map(retries.fact_message, facts) if m is not None]

    def _stats_row(self, key: Key) -> tuple[dict[str, Any], str]:
        row = aggregates.to_row(self.aggs[key], by_channel=key[0] == "b")
        row["tenant_id"] = key[1]
        row["window_start"] = key[-1] // 1000
        row["shard"] = self.id
        row["is_final"] = int(key in self.closed)
        if key[0] == "b":
            row["broadcast_id"] = key[2]
            return row, "broadcast_stats_1m"
        row["region"], row["channel"] = key[2], key[3]
        return row, "region_stats_1m"

    def published(self, encoded_keys: Iterable[bytes]) -> None:
        """The snapshot of these keys is in Kafka: clear their marks, drop final windows."""
        keys = set(encoded_keys)
        sent = {k for k in keys if k[:1] == retries.OUTBOX}
        self.followups.published(sent, self._cleanup)
        for encoded in keys - sent:
            self.dirty.discard(encoded)
            self._cleanup.delete(b"x" + encoded)
            key = tuple(orjson.loads(encoded[1:]))
            if key in self.closed:
                self.closed.discard(key)
                del self.aggs[key]
                self._cleanup.delete(encoded)

    def take_cleanup(self) -> Change:
        """What `published` changed (marks cleared, final windows dropped), to persist."""
        change, self._cleanup = self._cleanup, Change()
        return change

    def take_counts(self) -> dict[str, int]:
        counts = self.counts
        self.counts = dict.fromkeys(counts, 0)
        return counts


def _critical(state: dict[str, Any]) -> bool:
    """A broadcast critical_unread watches: high or critical, with an ack deadline."""
    return state["priority"] in ("high", "critical") and state["ack_deadline_s"] is not None
