"""What the shards tell the escalation agents (SPEC §5): counts per rule subject and second
of event time, and each shard's event-time clock.

Escalations are decided on event time, second by second, from the counts of every shard: a
region's deliveries are spread over all of them, so each sends its part. A shard sends per
transaction one message per `herald.signals` partition, holding the deltas its batches
produced for subjects of that partition, its input offset (the agent applies a shard's
message at most once per subject by it) and its clock. Deltas, not snapshots: a second's
count is final in the message that carries it, because the message commits in the same
transaction as the input offsets it covers.
"""

from __future__ import annotations

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


def partition_of(subject: SubjectKey, partitions: int) -> int:
    """The `herald.signals` partition (and escalation table partition) of a subject: stable
    across processes and runs, unlike Python's salted hash."""
    digest = hashlib.blake2b("\x1f".join(subject).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % partitions


class Outgoing:
    """A shard's deltas since its last transaction, and broadcast facts critical_unread needs
    (sent time and deadline of high and critical broadcasts)."""

    def __init__(self) -> None:
        self.deltas: dict[tuple[SubjectKey, int], list[int]] = {}
        self.broadcasts: dict[tuple[str, str], list[Any]] = {}
        self._sent_second: dict[int, int | None] = {}  # per partition, the clock last sent

    def add(self, subject: SubjectKey, ts_ms: int, *counts: int) -> None:
        key = (subject, ts_ms - ts_ms % SECOND_MS)
        current = self.deltas.get(key)
        if current is None:
            self.deltas[key] = list(counts)
        else:
            for i, n in enumerate(counts):
                current[i] += n

    def broadcast(self, tenant: str, broadcast: str, sent_ms: int | None,
                  deadline_s: int | None) -> None:  # fmt: skip
        """A critical broadcast's timing; a deadline of None: it is no longer critical."""
        self.broadcasts[(tenant, broadcast)] = [sent_ms, deadline_s]

    def messages(self, shard: int, offset: int, clock: int | None,
                 partitions: int) -> list[dict[str, Any]]:  # fmt: skip
        """One message per partition with deltas or a clock a second further, then clear."""
        by_partition: dict[int, dict[str, list[Any]]] = defaultdict(lambda: {"d": [], "b": []})
        for (subject, second), counts in self.deltas.items():
            by_partition[partition_of(subject, partitions)]["d"].append([*subject, second,
                                                                          *counts])  # fmt: skip
        for (tenant, broadcast), timing in self.broadcasts.items():
            subject = ("critical_unread", tenant, broadcast)
            by_partition[partition_of(subject, partitions)]["b"].append([tenant, broadcast,
                                                                          *timing])  # fmt: skip
        self.deltas, self.broadcasts = {}, {}
        tick = None if clock is None else clock // SECOND_MS
        out = []
        for p in range(partitions):
            if p in by_partition or self._sent_second.get(p, -1) != tick:
                self._sent_second[p] = tick
                out.append({"shard": shard, "offset": offset, "clock": clock, "partition": p,
                            **by_partition.get(p, {"d": [], "b": []})})  # fmt: skip
        return out
