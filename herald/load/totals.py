"""The expected results of a set of messages: what Herald must report (SPEC §4, §6).

Written independently of the pipeline's own counting (herald/tables/, herald/streams/), so the
end-to-end tests compare Herald against a second, simple implementation: counters, histogram
bucket counts, time-to-read, late drops against a watermark the test establishes, and the
`broadcasts` lifecycle rows.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from herald.config import DEFAULT_RETRY
from herald.load.produce import SimEvent
from herald.model import topics
from herald.model.schema import BUCKETS_PER_OCTAVE

Counters = Counter[str]


Histogram = Counter[int]  # log bucket -> count
BroadcastMinute = tuple[str, str, datetime]
RegionMinute = tuple[str, str, str, datetime]
GRACE_S = 600
WINDOW = timedelta(minutes=1)


def instant(occurred_at: str) -> datetime:
    return datetime.fromisoformat(occurred_at).astimezone(UTC)


def window_start(occurred_at: str) -> datetime:
    """The 1-minute event-time window of an RFC 3339 instant, UTC (SPEC §4)."""
    return instant(occurred_at).replace(second=0, microsecond=0)


def log_bucket(ms: float) -> int:
    """SPEC §4's mergeable histogram: floor(log2(ms) * buckets per octave), ms at least 1."""
    return math.floor(math.log2(max(ms, 1.0)) * BUCKETS_PER_OCTAVE)


def epoch_ms(when: datetime) -> int:
    return round(when.timestamp() * 1000)


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
    latency: dict[BroadcastMinute, Histogram] = field(default_factory=dict)
    time_to_read: dict[BroadcastMinute, Histogram] = field(default_factory=dict)
    region_latency: dict[RegionMinute, Histogram] = field(default_factory=dict)
    region_time_to_read: dict[RegionMinute, Histogram] = field(default_factory=dict)
    lifecycles: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # (tenant, broadcast, channel) -> "delivered" / "read" / "responded" -> the users (reach)
    reach: dict[tuple[str, str, str], dict[str, set[str]]] = field(default_factory=dict)
    valid: int = 0  # distinct (tenant_id, event_id)
    duplicates: int = 0  # valid messages beyond the first of their (tenant_id, event_id)
    late_dropped: int = 0  # distinct valid events whose window had closed when they came
    invalid: int = 0
    messages: Counters = field(default_factory=Counter)  # per topic
    grace_s: int = GRACE_S

    def is_final(self, minute: datetime, watermark_ms: int) -> bool:
        """A window is final once the table watermark passed its end plus grace."""
        return epoch_ms(minute + WINDOW) + self.grace_s * 1000 <= watermark_ms

    def recipients(self) -> dict[tuple[str, str], tuple[int, int, int]]:
        """(tenant, broadcast) -> distinct users delivered, read and responded, any channel."""
        users: dict[tuple[str, str], dict[str, set[str]]] = {}
        for (tenant, broadcast, _), by_kind in self.reach.items():
            into = users.setdefault((tenant, broadcast), _no_users())
            for kind, who in by_kind.items():
                into[kind] |= who
        return {key: (len(u["delivered"]), len(u["read"]), len(u["responded"]))
                for key, u in users.items()}  # fmt: skip

    def channel_recipients(self) -> dict[tuple[str, str, str], tuple[int, int]]:
        """(tenant, broadcast, channel) -> distinct users delivered and read on it."""
        return {k: (len(u["delivered"]), len(u["read"])) for k, u in self.reach.items()}

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


def expected_totals(
    events: list[SimEvent],
    grace_s: int = GRACE_S,
    watermarks: Mapping[int, int] | None = None,
) -> Totals:
    """Recompute the totals from the generated messages (those with `event` are valid).

    `watermarks` {message index: table watermark ms}: from that message on, the test has made
    sure the table watermark is at least this far (it waited until Herald had seen everything
    before), so events of windows closed by then are late drops. Without it, nothing is late.
    """
    totals = Totals(grace_s=grace_s)
    seen: set[tuple[str, str]] = set()
    closed_before_ms: int | None = None
    valid_events: list[dict[str, Any]] = []
    for index, msg in enumerate(events):
        if watermarks and index in watermarks:
            closed_before_ms = watermarks[index] - grace_s * 1000
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
        if msg.topic == topics.BROADCASTS:
            valid_events.append({**event, "topic": msg.topic})
        elif closed_before_ms is not None and _window_end_ms(event) <= closed_before_ms:
            totals.late_dropped += 1
        else:
            _count(totals, event)
            valid_events.append({**event, "topic": msg.topic})
    _histograms(totals, valid_events)
    totals.lifecycles = lifecycles(e for e in valid_events if e["topic"] == topics.BROADCASTS)
    return totals


def table_watermark(
    events: Iterable[SimEvent], partition_of: Callable[[SimEvent], int], idle: Iterable[int] = ()
) -> int:
    """SPEC §4's table watermark once all `events` are in: the minimum over the `deliveries`
    and `acks` partitions that are not idle of the highest event time seen on each (the
    maximum when all are idle)."""
    highest: dict[tuple[str, int], int] = {}
    for msg in events:
        if msg.event is None or msg.topic == topics.BROADCASTS:
            continue
        source = (msg.topic, partition_of(msg))
        ts = epoch_ms(instant(msg.event["occurred_at"]))
        highest[source] = max(highest.get(source, ts), ts)
    idle_parts = set(idle)
    active = [ts for (_, part), ts in highest.items() if part not in idle_parts]
    return min(active) if active else max(highest.values())


def _window_end_ms(event: dict[str, Any]) -> int:
    return epoch_ms(window_start(event["occurred_at"]) + WINDOW)


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
    if event["type"] in ("delivered", "read", "responded"):
        users = totals.reach.setdefault((tenant, broadcast, channel or ""), _no_users())
        users[event["type"]].add(event["user_id"])


def _no_users() -> dict[str, set[str]]:
    return {"delivered": set(), "read": set(), "responded": set()}


def _histograms(totals: Totals, events: list[dict[str, Any]]) -> None:
    """Delivery latency per window of the delivery; time-to-read (read - the broadcast's first
    `sent`) per window of the read, for broadcasts that were sent."""
    sent: dict[tuple[str, str], datetime] = {}
    for e in events:
        key = (e["tenant_id"], e["broadcast_id"])
        if e["topic"] == topics.BROADCASTS and e["type"] == "sent":
            at = instant(e["occurred_at"])
            sent[key] = min(sent.get(key, at), at)
    for e in events:
        if e["topic"] == topics.BROADCASTS:
            continue
        if e["type"] == "delivered" and e.get("latency_ms") is not None:
            ms = float(e["latency_ms"])
            _add(totals.latency, totals.region_latency, e, log_bucket(ms))
        sent_at = sent.get((e["tenant_id"], e["broadcast_id"]))
        if e["type"] == "read" and sent_at is not None:
            ms = max((instant(e["occurred_at"]) - sent_at).total_seconds() * 1000, 0.0)
            _add(totals.time_to_read, totals.region_time_to_read, e, log_bucket(ms))


def _add(by_broadcast: dict[BroadcastMinute, Histogram], by_region: dict[RegionMinute, Histogram],
         e: dict[str, Any], bucket: int) -> None:  # fmt: skip
    minute = window_start(e["occurred_at"])
    by_broadcast.setdefault((e["tenant_id"], e["broadcast_id"], minute), Counter())[bucket] += 1
    region = (e["tenant_id"], e["region"], e["channel"], minute)
    by_region.setdefault(region, Counter())[bucket] += 1


# Lifecycle: the status is the type of the latest event (ties: the later stage); a milestone is
# the first time its event happened; a descriptive field is the value of the latest event that
# gives it, `created` and `updated` events before any other.
_STAGE_ORDER = ("created", "scheduled", "updated", "sent", "expired", "completed", "cancelled")
_MILESTONES = ("created", "scheduled", "sent", "completed", "cancelled")
_FIELDS = ("priority", "channels", "target_count", "content_format", "language",
           "ack_deadline_s", "title", "expires_at")  # fmt: skip
_DEFAULTS = {"priority": "normal", "channels": [], "target_count": 0, "content_format": "",
             "language": "en", "ack_deadline_s": None, "title": "", "expires_at": None,
             "targeting_mode": "", "segment": ""}  # fmt: skip


def lifecycles(events: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The `broadcasts` row of each broadcast (times as epoch ms), from its distinct events."""
    by_broadcast: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in events:
        by_broadcast.setdefault((e["tenant_id"], e["broadcast_id"]), []).append(e)
    return {key: _lifecycle(evs) for key, evs in by_broadcast.items()}


def _lifecycle(events: list[dict[str, Any]]) -> dict[str, Any]:
    def at(e: dict[str, Any]) -> int:
        return epoch_ms(instant(e["occurred_at"]))

    latest = max(events, key=lambda e: (at(e), _STAGE_ORDER.index(e["type"])))
    row: dict[str, Any] = {"status": latest["type"], **_DEFAULTS}
    for milestone in _MILESTONES:
        times = [at(e) for e in events if e["type"] == milestone]
        row[f"{milestone}_at"] = min(times) if times else None
    ranked = sorted(events, key=lambda e: (e["type"] in ("created", "updated"), at(e)))
    for e in ranked:  # later ranks overwrite earlier ones
        for name in _FIELDS:
            if e.get(name) not in (None, []):
                row[name] = epoch_ms(instant(e[name])) if name == "expires_at" else e[name]
        targeting = e.get("targeting")
        if targeting:
            row["targeting_mode"] = targeting.get("mode", "")
            row["segment"] = targeting.get("segment") or ""
    return row


Recipient = tuple[str, str, str, str]  # tenant, broadcast, user, channel


@dataclass
class Followups:
    """SPEC §3 for a set of messages: the retries to schedule and the dead letters to send.

    `retries`: (recipient, next attempt) → (failure ms, earliest due ms, latest due ms);
    `supersede`: per recipient, (ms, attempt) of the events that cancel a retry due after them
    (a delivery counts as attempt infinity)."""

    retries: dict[tuple[Recipient, int], tuple[int, int, int]] = field(default_factory=dict)
    dead_letters: set[tuple[Recipient, int]] = field(default_factory=set)
    supersede: dict[Recipient, list[tuple[int, float]]] = field(default_factory=dict)

    def cancelled(self, retry: tuple[Recipient, int], due_ms: int) -> bool:
        """In event-time order, something superseded the retry before it came due."""
        recipient, attempt = retry
        failed_ms = self.retries[retry][0]
        return any(failed_ms <= ms < due_ms and n >= attempt
                   for ms, n in self.supersede.get(recipient, []))  # fmt: skip


def expected_followups(events: list[SimEvent]) -> Followups:
    """From the distinct valid deliveries, in the policies' defaults."""
    out, seen = Followups(), set()
    for msg in events:
        event = msg.event
        if event is None or msg.topic != topics.DELIVERIES:
            continue
        identity = (event["tenant_id"], event["event_id"])
        if identity in seen:
            continue
        seen.add(identity)
        who = (event["tenant_id"], event["broadcast_id"], event["user_id"], event["channel"])
        ms, attempt = epoch_ms(instant(event["occurred_at"])), event.get("attempt", 1)
        if event["type"] in ("attempted", "failed", "delivered"):
            level = math.inf if event["type"] == "delivered" else attempt
            out.supersede.setdefault(who, []).append((ms, level))
        if event["type"] != "failed":
            continue
        policy = DEFAULT_RETRY[event["channel"]]
        if event.get("retryable", True) is not False and attempt < policy.max_attempts:
            delay_ms = min(policy.cap_s, policy.base_s * 2 ** (attempt - 1)) * 1000
            out.retries[(who, attempt + 1)] = (ms, ms + int(delay_ms / 2), ms + int(delay_ms))
        else:
            out.dead_letters.add((who, attempt))
    return out
