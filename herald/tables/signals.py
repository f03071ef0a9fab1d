"""What the shards tell the escalation agents (SPEC §5): counts per rule subject and second
of event time, and each shard's event-time clock.

Escalations are decided on event time, second by second, from the counts of every shard: a
region's deliveries are spread over all of them, so each sends its part. With each poll
the shard service sends one message per `herald.signals` partition, holding the deltas its
shards' batches produced for subjects of that partition, summed over its shards, with each
shard's input offset (the agent applies a message at most once per subject by them) and
clock. Deltas, not snapshots, and in the transaction that commits the input they came from,
so each delta reaches the agent once and none waits in the shard's state.
"""

from __future__ import annotations

import functools
import hashlib
from collections import defaultdict
from typing import Any

SECOND_MS = 1000
# Rule -> the counts its deltas carry.
FIELDS = {
    "region_failure_rate": ("delivered", "failed"),  # subject: tenant, region, channel
    "dead_letter_spike": ("dead_letters",),  # tenant, channel
    "pending_backlog": ("pending_old",),  # tenant, region: +1 once old, -1 when resolved
    "critical_unread": ("delivered", "read"),  # tenant, broadcast
    "tenant_quota": ("events",),  # tenant
}
SubjectKey = tuple[str, ...]  # rule, tenant, and the rule's subject fields


@functools.lru_cache(maxsize=65_536)  # a poll's thousands of rows name a few hundred subjects
def partition_of(subject: SubjectKey, partitions: int) -> int:
    """The `herald.signals` partition (and escalation table partition) of a subject: stable
    across processes and runs, unlike Python's salted hash."""
    digest = hashlib.blake2b("\x1f".join(subject).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % partitions


class Outgoing:
    """A shard's deltas since its last transaction, and broadcast facts critical_unread needs
    (sent time and deadline of high and critical broadcasts)."""

    def __init__(self) -> None:
        # (*subject, second) -> counts: one flat tuple, built once per event on the hot path.
        self.deltas: dict[tuple[Any, ...], list[int]] = {}
        self.broadcasts: dict[tuple[str, str], list[Any]] = {}

    def add(self, subject: SubjectKey, ts_ms: int, *counts: int) -> None:
        key = (*subject, ts_ms - ts_ms % SECOND_MS)
        current = self.deltas.get(key)
        if current is None:
            self.deltas[key] = list(counts)
        else:
            for i, n in enumerate(counts):
                current[i] += n

    def attempt(self, tenant: str, region: str, channel: str, ts_ms: int, failed: int) -> None:
        """`add` for region_failure_rate, inlined: it runs for every delivered and failed."""
        key = ("region_failure_rate", tenant, region, channel, ts_ms - ts_ms % SECOND_MS)
        current = self.deltas.get(key)
        if current is None:
            self.deltas[key] = [1 - failed, failed]
        else:
            current[failed] += 1

    def broadcast(self, tenant: str, broadcast: str, sent_ms: int | None,
                  deadline_s: int | None) -> None:  # fmt: skip
        """A critical broadcast's timing; a deadline of None: it is no longer critical."""
        self.broadcasts[(tenant, broadcast)] = [sent_ms, deadline_s]

    def __bool__(self) -> bool:
        return bool(self.deltas or self.broadcasts)

    @classmethod
    def from_state(cls, state: list[list[list[Any]]] | None) -> Outgoing:
        """What an earlier version kept unsent in a shard's state: [[*key, *counts] per
        delta], [[tenant, broadcast, *timing] per broadcast]]."""
        outgoing = cls()
        for row in state[0] if state else ():
            width = len(FIELDS[row[0]])
            outgoing.deltas[tuple(row[:-width])] = row[-width:]
        for tenant, broadcast, *timing in state[1] if state else ():
            outgoing.broadcasts[(tenant, broadcast)] = timing
        return outgoing

    def take(self) -> tuple[dict[tuple[Any, ...], list[int]], dict[tuple[str, str], list[Any]]]:
        taken = self.deltas, self.broadcasts
        self.deltas, self.broadcasts = {}, {}
        return taken


class Sender:
    """Turns several shards' deltas into one message per `herald.signals` partition per
    transaction. Rows ("m": [rule, *subject, second, *counts]) are summed over the shards:
    every shard sees every region, so the agent gets one row per subject and second where
    it got one per shard (a quarter of the rows on the bench load). `offsets` and `clocks`
    are per shard. A partition with nothing new and every clock in the same second as last
    time gets no message."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._sent: dict[int, dict[str, int | None]] = {}  # per partition, the clocks' seconds

    def messages(self, shards: list[tuple[int, int, int | None, Outgoing]]
                 ) -> list[dict[str, Any]]:  # fmt: skip
        """`shards`: (id, input offset, clock, outgoing) each; their outgoing is emptied."""
        summed = Outgoing()
        rows: dict[int, dict[str, list[Any]]] = defaultdict(lambda: {"m": [], "b": []})
        for shard, _, _, outgoing in shards:
            deltas, broadcasts = outgoing.take()
            for key, counts in deltas.items():
                summed.add(key[:-1], key[-1], *counts)  # key[-1]: already a second
            for (tenant, broadcast), timing in broadcasts.items():
                p = partition_of(("critical_unread", tenant, broadcast), self.partitions)
                rows[p]["b"].append([shard, tenant, broadcast, *timing])
        for key, counts in summed.deltas.items():
            rows[partition_of(key[:-1], self.partitions)]["m"].append([*key, *counts])
        offsets = {str(shard): offset for shard, offset, _, _ in shards}
        clocks = {str(shard): clock for shard, _, clock, _ in shards}
        seconds = {k: None if c is None else c // SECOND_MS for k, c in clocks.items()}
        out = []
        for p in range(self.partitions):
            if p in rows or self._sent.get(p) != seconds:
                self._sent[p] = seconds
                out.append({"partition": p, "offsets": offsets, "clocks": clocks,
                            **rows.get(p, {"m": [], "b": []})})  # fmt: skip
        return out
