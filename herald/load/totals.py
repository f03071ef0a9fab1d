"""The expected results of a set of messages: what Herald must report (SPEC §4, §6).

Written independently of the pipeline's own counting (herald/tables/aggregates.py), so the
end-to-end tests compare Herald against a second, simple implementation.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from herald.config import DEFAULT_RETRY
from herald.load.produce import SimEvent
from herald.model import topics

Counters = Counter[str]


def window_start(occurred_at: str) -> datetime:
    """The 1-minute event-time window of an RFC 3339 instant, UTC (SPEC §4)."""
    instant = datetime.fromisoformat(occurred_at).astimezone(UTC)
    return instant.replace(second=0, microsecond=0)


@dataclass
class Totals:
    """What Herald must report for a set of messages (distinct valid events, SPEC §4, §6).

    Minute keys are the UTC window start (`window_start`); counter names are those of
    `herald.tables.aggregates.COUNTERS`.
    """

    by_broadcast: dict[tuple[str, str], Counters] = field(default_factory=dict)
    by_region: dict[tuple[str, str, str], Counters] = field(default_factory=dict)
    by_broadcast_minute: dict[tuple[str, str, datetime], Counters] = field(default_factory=dict)
    by_region_minute: dict[tuple[str, str, str, datetime], Counters] = field(default_factory=dict)
    valid: int = 0  # distinct (tenant_id, event_id)
    duplicates: int = 0  # valid messages beyond the first of their (tenant_id, event_id)
    invalid: int = 0
    messages: Counters = field(default_factory=Counter)  # per topic

    def grand_total(self) -> Counters:
        """All counters summed over every broadcast."""
        total: Counters = Counter()
        for counters in self.by_broadcast.values():
            total.update(counters)
        return total


def _counter_names(event: dict[str, Any]) -> list[str]:
    """The counters one delivery or ack event adds 1 to."""
    names = [event["type"]]
    if event["type"] == "failed":
        max_attempts = DEFAULT_RETRY[event["channel"]].max_attempts
        if event.get("retryable", True) is not False and event.get("attempt", 1) < max_attempts:
            names.append("retries_scheduled")
        else:
            names.append("dead_lettered")
    return names


def expected_totals(events: list[SimEvent]) -> Totals:
    """Recompute the totals from the generated messages (those with `event` are valid)."""
    totals = Totals()
    seen: set[tuple[str, str]] = set()
    for msg in events:
        totals.messages[msg.topic] += 1
        event = msg.event
        if event is None:
            totals.invalid += 1
            continue
        identity = (event["tenant_id"], event["event_id"])
        if identity in seen:
            totals.duplicates += 1
            continue
        seen.add(identity)
        totals.valid += 1
        if msg.topic != topics.BROADCASTS:
            _count(totals, event)
    return totals


def _count(totals: Totals, event: dict[str, Any]) -> None:
    tenant, broadcast = event["tenant_id"], event["broadcast_id"]
    region, channel = event["region"], event["channel"]
    minute = window_start(event["occurred_at"])
    for counters in (
        totals.by_broadcast.setdefault((tenant, broadcast), Counter()),
        totals.by_region.setdefault((tenant, region, channel), Counter()),
        totals.by_broadcast_minute.setdefault((tenant, broadcast, minute), Counter()),
        totals.by_region_minute.setdefault((tenant, region, channel, minute), Counter()),
    ):
        counters.update(_counter_names(event))
