"""Deliveries still pending after a while (SPEC §5 `pending_backlog`), as shard state.

A `pending` delivery (user offline, message held) stays pending until the same recipient and
channel sees `delivered`, `expired` or `failed`. The broadcast's shard knows both ends, so it
keeps one entry per pending recipient-channel, in RocksDB and the changelog like every other
piece of its state, and a timer at `pending time + older_than`: when event time passes it and
the delivery is still pending, the (tenant, region) backlog gains one, in the second it became
old; when the delivery resolves later, it loses one, in the second it resolved.
"""

from __future__ import annotations

import heapq
from typing import Any

import orjson

from herald.model.event import Event
from herald.tables.retries import Recipient
from herald.tables.signals import Outgoing
from herald.tables.store import Change, ShardStore

PENDING = b"q"
RESOLVING = frozenset(("delivered", "expired", "failed"))
# Every delivery kind escalations read: these and the attempts (delivered, failed) the
# failure rate counts. Queued and attempted, two thirds of the traffic, skip it all.
SIGNALLED = RESOLVING | {"pending"}
RULE = "pending_backlog"


class Backlog:
    """Pending recipient-channels: key -> [pending since ms, region, counted as old]."""

    def __init__(self, store: ShardStore, older_than_s: int) -> None:
        self.older_ms = older_than_s * 1000
        self.entries: dict[Recipient, list[Any]] = store.load(PENDING)
        self.timers = [(v[0] + self.older_ms, k) for k, v in self.entries.items() if not v[2]]
        heapq.heapify(self.timers)
        # Written once per batch (`persist`): most pending deliveries resolve within a batch
        # or two, and one that comes and goes in the same batch is never written at all.
        self._touched: set[Recipient] = set()
        self._unsaved: set[Recipient] = set()  # added in this batch

    def observe(self, ev: Event, key: Recipient, out: Outgoing) -> None:
        """A counted delivery event of recipient-channel `key`. Only a pending one, or one
        of a key in `entries`, changes anything: the shard skips the call for the others."""
        kind = ev.type
        if kind == "pending":
            if key not in self.entries:
                self.entries[key] = [ev.ts, ev.region or "", False]
                heapq.heappush(self.timers, (ev.ts + self.older_ms, key))
                if key not in self._touched:  # else stored before, resolved in this batch
                    self._unsaved.add(key)
                self._touched.add(key)
        elif kind in RESOLVING and self.entries:
            entry = self.entries.pop(key, None)
            if entry is None:
                return
            if key in self._unsaved:
                self._unsaved.discard(key)
                self._touched.discard(key)
            else:
                self._touched.add(key)
            due = entry[0] + self.older_ms
            if not entry[2] and ev.ts >= due:
                # Old by event time, though the watermark (held back by a slower partition)
                # has not fired its timer yet: count it as the timer would have.
                entry[2] = True
                out.add((RULE, key[0], entry[1]), due, 1)
            if entry[2]:
                out.add((RULE, key[0], entry[1]), ev.ts, -1)

    def fire(self, clock_ms: int, out: Outgoing) -> None:
        """Count the deliveries that became old by `clock_ms` (event time)."""
        while self.timers and self.timers[0][0] <= clock_ms:
            due, key = heapq.heappop(self.timers)
            entry = self.entries.get(key)
            if entry is None or entry[2] or entry[0] + self.older_ms != due:
                continue  # resolved meanwhile
            entry[2] = True
            self._touched.add(key)
            out.add((RULE, key[0], entry[1]), due, 1)

    def persist(self, change: Change) -> None:
        """Put what this batch changed into its `change`."""
        for key in self._touched:
            entry = self.entries.get(key)
            if entry is None:
                change.delete(_encode(key))
            else:
                change.put(_encode(key), entry)
        self._touched.clear()
        self._unsaved.clear()


def _encode(key: Recipient) -> bytes:
    return PENDING + orjson.dumps(key)
