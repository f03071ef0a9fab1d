"""What the shards tell the escalation agents (SPEC §5): counts per rule subject and second
of event time, and each shard's event-time clock.

Escalations are decided on event time, second by second, from the counts of every shard: a
region's deliveries are spread over all of them, so each sends its part. With each poll
the shard service sends one message per `herald.signals` partition, holding the deltas its
shards' batches produced for subjects of that partition, summed over its shards and grouped
by subject, with each shard's input offset (the agent applies a message at most once per
subject by them) and clock. Deltas, not snapshots, and in the transaction that commits the
input they came from, so each delta reaches the agent once and none waits in the shard's
state.
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
Deltas = dict[SubjectKey, dict[int, list[int]]]  # subject -> second -> counts


@functools.lru_cache(maxsize=65_536)  # a poll's thousands of rows name a few hundred subjects
def partition_of(subject: SubjectKey, partitions: int) -> int:
    """The `herald.signals` partition (and escalation table partition) of a subject: stable
    across processes and runs, unlike Python's salted hash."""
    digest = hashlib.blake2b("\x1f".join(subject).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % partitions


class Outgoing:
    """The deltas of a shard service's shards since their last transaction, per subject and
    second, and broadcast facts critical_unread needs (sent time and deadline of high and
    critical broadcasts). The service's shards share one: every shard sees every region, so
    their counts for a subject and second add up here, once per event, and the agent gets
    one count per subject and second."""

    def __init__(self) -> None:
        self.deltas: Deltas = {}
        self.broadcasts: dict[tuple[str, str], list[Any]] = {}  # -> [shard, *timing]

    def add(self, subject: SubjectKey, ts_ms: int, *counts: int) -> None:
        seconds = self.deltas.get(subject)
        if seconds is None:
            seconds = self.deltas[subject] = {}
        second = ts_ms - ts_ms % SECOND_MS
        current = seconds.get(second)
        if current is None:
            seconds[second] = list(counts)
        else:
            for i, n in enumerate(counts):
                current[i] += n

    def attempt(self, tenant: str, region: str, channel: str, ts_ms: int, failed: int) -> None:
        """`add` for region_failure_rate, inlined: it runs for every delivered and failed."""
        subject = ("region_failure_rate", tenant, region, channel)
        seconds = self.deltas.get(subject)
        if seconds is None:
            seconds = self.deltas[subject] = {}
        second = ts_ms - ts_ms % SECOND_MS
        current = seconds.get(second)
        if current is None:
            seconds[second] = [1 - failed, failed]
        else:
            current[failed] += 1

    def broadcast(self, shard: int, tenant: str, broadcast: str, sent_ms: int | None,
                  deadline_s: int | None) -> None:  # fmt: skip
        """A critical broadcast's timing; a deadline of None: it is no longer critical."""
        self.broadcasts[(tenant, broadcast)] = [shard, sent_ms, deadline_s]

    def restore(self, shard: int, state: list[list[list[Any]]] | None) -> bool:
        """Add what an earlier version kept unsent in a shard's state: [[*key, *counts] per
        delta], [[tenant, broadcast, *timing] per broadcast]]; whether it kept any state."""
        if state is None:
            return False
        deltas, broadcasts = state
        for row in deltas:
            self.add_row(row)
        for tenant, broadcast, *timing in broadcasts:
            self.broadcast(shard, tenant, broadcast, *timing)
        return True

    def add_row(self, row: list[Any]) -> None:
        """`add` for a row of one subject and second: [rule, *subject, second, *counts]."""
        width = len(FIELDS[row[0]])
        self.add(tuple(row[: -width - 1]), row[-width - 1], *row[-width:])

    def take(self) -> tuple[Deltas, dict[tuple[str, str], list[Any]]]:
        taken = self.deltas, self.broadcasts
        self.deltas, self.broadcasts = {}, {}
        return taken


def grouped(rows: list[list[Any]]) -> list[list[Any]]:
    """Rows of one subject and second each ([rule, *subject, second, *counts], as messages
    carried them before session 12) as rows of one subject each."""
    out = Outgoing()
    for row in rows:
        out.add_row(row)
    return [subject_row(subject, seconds) for subject, seconds in out.deltas.items()]


def subject_row(subject: SubjectKey, seconds: dict[int, list[int]]) -> list[Any]:
    """A message's row for one subject: [rule, *subject, [second, ...], [counts, ...]],
    the seconds ascending."""
    ordered = sorted(seconds)
    return [*subject, ordered, [seconds[s] for s in ordered]]


class Sender:
    """Turns the shards' deltas into one message per `herald.signals` partition per
    transaction: "s", a row per subject ([rule, *subject, [seconds], [counts]]), and "b",
    the broadcasts' timings; `offsets` and `clocks` per shard. A partition with nothing new
    and every clock in the same second as last time gets no message."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._sent: dict[int, dict[str, int | None]] = {}  # per partition, the clocks' seconds

    def messages(self, shards: list[tuple[int, int, int | None]], outgoing: Outgoing
                 ) -> list[dict[str, Any]]:  # fmt: skip
        """`shards`: (id, input offset, clock) each; `outgoing` is emptied."""
        deltas, broadcasts = outgoing.take()
        rows: dict[int, dict[str, list[Any]]] = defaultdict(lambda: {"s": [], "b": []})
        for subject, by_second in deltas.items():
            rows[partition_of(subject, self.partitions)]["s"].append(
                subject_row(subject, by_second)
            )
        for (tenant, broadcast), (shard, *timing) in broadcasts.items():
            p = partition_of(("critical_unread", tenant, broadcast), self.partitions)
            rows[p]["b"].append([shard, tenant, broadcast, *timing])
        offsets = {str(shard): offset for shard, offset, _ in shards}
        clocks = {str(shard): clock for shard, _, clock in shards}
        seconds = {k: None if c is None else c // SECOND_MS for k, c in clocks.items()}
        out = []
        for p in range(self.partitions):
            if p in rows or self._sent.get(p) != seconds:
                self._sent[p] = seconds
                out.append({"partition": p, "offsets": offsets, "clocks": clocks,
                            **rows.get(p, {"s": [], "b": []})})  # fmt: skip
        return out
