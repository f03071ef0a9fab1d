"""The expected escalation transitions of a set of messages (SPEC §5), computed the slow and
obvious way: every rule's value at every second of event time, from the distinct valid
events, with hysteresis and levels. Independent of the pipeline (herald/tables/), so the
end-to-end tests compare Herald's incremental, sharded evaluation against it.

Like the pipeline, a second's events count from the tick at the end of that second; a
critical broadcast is checked once, at sent + ack_deadline_s, exactly.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from herald.config import DEFAULT_RETRY, Escalations, RetryPolicy
from herald.load.produce import SimEvent
from herald.load.totals import epoch_ms, instant, lifecycles
from herald.model import topics

S = 1000
Transition = tuple[str, str, str, str, int, int, int]  # rule, tenant, subject, state, level,
# opened ms, occurred ms
PerSecond = dict[int, list[int]]


def expected_escalations(
    events: list[SimEvent],
    config: Escalations | None = None,
    retry: dict[str, RetryPolicy] | None = None,
) -> list[Transition]:
    """Every transition, in order of (occurred_at, rule, subject)."""
    config = config or Escalations()
    distinct = list(_distinct(events))
    out: list[Transition] = []
    series = _series(distinct, config, retry or DEFAULT_RETRY)
    for (rule, tenant, subject), per_second in sorted(series.items()):
        rule_config = getattr(config, rule)
        if rule_config.enabled:
            out += _evaluate(rule, tenant, subject, per_second, rule_config)
    out += _critical(distinct, config)
    return sorted(out, key=lambda t: (t[6], t[0], t[2], t[1]))


def _distinct(events: Iterable[SimEvent]) -> Iterable[dict[str, Any]]:
    seen: set[tuple[str, str]] = set()
    for msg in events:
        event = msg.event
        if event is None or (event["tenant_id"], event["event_id"]) in seen:
            continue
        seen.add((event["tenant_id"], event["event_id"]))
        yield {**event, "topic": msg.topic, "ms": epoch_ms(instant(event["occurred_at"]))}


def _series(events: list[dict[str, Any]], config: Escalations,
            retry: dict[str, RetryPolicy]) -> dict[tuple[str, str, str], PerSecond]:  # fmt: skip
    """(rule, tenant, subject) -> second -> counts, for the rules fed by plain counts."""
    series: dict[tuple[str, str, str], PerSecond] = defaultdict(dict)

    def add(rule: str, tenant: str, subject: str, ms: int, *counts: int) -> None:
        bucket = series[(rule, tenant, subject)].setdefault(ms - ms % S, [0] * len(counts))
        for i, n in enumerate(counts):
            bucket[i] += n

    quotas = config.tenant_quota.quotas
    for e in events:
        # A quota meters deliveries and acks (what a tenant's windows count), not lifecycles.
        if e["tenant_id"] in quotas and e["topic"] != topics.BROADCASTS:
            add("tenant_quota", e["tenant_id"], e["tenant_id"], e["ms"], 1)
        if e["topic"] != topics.DELIVERIES:
            continue
        where = f"{e['region']}/{e['channel']}"
        if e["type"] == "delivered":
            add("region_failure_rate", e["tenant_id"], where, e["ms"], 1, 0)
        elif e["type"] == "failed":
            add("region_failure_rate", e["tenant_id"], where, e["ms"], 0, 1)
            policy = retry[e["channel"]]
            if e.get("retryable", True) is False or e.get("attempt", 1) >= policy.max_attempts:
                add("dead_letter_spike", e["tenant_id"], e["channel"], e["ms"], 1)
    for (tenant, region), ms, delta in _backlog(events, config.pending_backlog.older_than_s):
        add("pending_backlog", tenant, region, ms, delta)
    return series


def _backlog(events: list[dict[str, Any]],
             older_than_s: int) -> Iterable[tuple[tuple[str, str], int, int]]:  # fmt: skip
    """+1 when a pending delivery becomes old, -1 when it resolves after that."""
    since: dict[tuple[str, ...], tuple[int, str]] = {}
    ordered = sorted((e for e in events if e["topic"] == topics.DELIVERIES), key=lambda e: e["ms"])
    old_ms = older_than_s * S
    for e in ordered:
        who = (e["tenant_id"], e["broadcast_id"], e["user_id"], e["channel"])
        if e["type"] == "pending" and who not in since:
            since[who] = (e["ms"], e["region"])
        elif e["type"] in ("delivered", "expired", "failed") and who in since:
            pending_ms, region = since.pop(who)
            if e["ms"] >= pending_ms + old_ms:
                yield (e["tenant_id"], region), pending_ms + old_ms, 1
                yield (e["tenant_id"], region), e["ms"], -1
    for (tenant, *_), (pending_ms, region) in since.items():
        yield (tenant, region), pending_ms + old_ms, 1


def _evaluate(rule: str, tenant: str, subject: str, per_second: PerSecond,
              config: Any) -> list[Transition]:  # fmt: skip
    """Every second from the first count until the last has left the window (sliding) or
    the levels are done: sums, then hysteresis, then levels."""
    window = getattr(config, "window_s", None)
    renotify = config.renotify_s * S
    first, last = min(per_second), max(per_second)
    end = last + S + (window * S if window else 0) + 2 * renotify + S
    out: list[Transition] = []
    opened: int | None = None
    level = 0
    sums = [0] * len(next(iter(per_second.values())))
    for t in range(first + S, end + S, S):
        for second, sign in ((t - S, 1), (t - S - window * S if window else None, -1)):
            if second is not None and second in per_second:
                sums = [a + sign * b for a, b in zip(sums, per_second[second], strict=True)]
        opens, resolves = _verdict(rule, tenant, sums, config)
        if opened is None:
            if opens:
                opened, level = t, 1
                out.append((rule, tenant, subject, "open", 1, t, t))
        elif resolves:
            out.append((rule, tenant, subject, "resolve", level, opened, t))
            opened = None
        elif level < 3 and t >= opened + level * renotify:
            level += 1
            out.append((rule, tenant, subject, "escalate", level, opened, t))
    return out


def _verdict(rule: str, tenant: str, sums: list[int], config: Any) -> tuple[bool, bool]:
    """(opens, resolves) of a rule's sums."""
    if rule == "tenant_quota":
        rate, quota = sums[0] / config.window_s, config.quotas[tenant]
        return rate > quota, rate < quota * config.resolve_ratio
    if rule == "region_failure_rate":
        attempts = sums[0] + sums[1]
        rate = sums[1] / attempts if attempts else 0.0
        opens = rate > config.open_above and attempts >= config.min_attempts
        return opens, rate < config.resolve_below
    return sums[0] >= config.open_at, sums[0] < config.resolve_below


def _critical(events: list[dict[str, Any]], config: Escalations) -> list[Transition]:
    """High and critical broadcasts with an ack deadline: read / delivered at the deadline,
    then at every second (and level time) until resolved."""
    rule = config.critical_unread
    if not rule.enabled:
        return []
    out: list[Transition] = []
    states = lifecycles(e for e in events if e["topic"] == topics.BROADCASTS)
    for (tenant, broadcast), state in sorted(states.items()):
        if state.get("priority") not in ("high", "critical") or not state.get("ack_deadline_s"):
            continue
        if state.get("sent_at") is None:
            continue
        deadline = state["sent_at"] + state["ack_deadline_s"] * S
        counts: PerSecond = defaultdict(lambda: [0, 0])
        for e in events:
            if (e["tenant_id"], e["broadcast_id"]) != (tenant, broadcast):
                continue
            if e["topic"] == topics.DELIVERIES and e["type"] == "delivered":
                counts[e["ms"] - e["ms"] % S][0] += 1
            elif e["topic"] == topics.ACKS and e["type"] == "read":
                counts[e["ms"] - e["ms"] % S][1] += 1
        out += _unread(tenant, broadcast, counts, deadline, rule.ratio, rule.renotify_s * S)
    return out


def _unread(tenant: str, broadcast: str, counts: PerSecond, deadline: int, ratio: float,
            renotify: int) -> list[Transition]:  # fmt: skip
    def read_ratio(t: int) -> float:
        delivered = sum(c[0] for s, c in counts.items() if s + S <= t)
        read = sum(c[1] for s, c in counts.items() if s + S <= t)
        return read / delivered if delivered else 0.0

    if read_ratio(deadline) >= ratio:
        return []
    rule = "critical_unread"
    out = [(rule, tenant, broadcast, "open", 1, deadline, deadline)]
    last = max([deadline, *counts]) + S
    seconds = range(deadline - deadline % S + S, last + 2 * renotify + S, S)
    ticks = sorted({*seconds, deadline + renotify, deadline + 2 * renotify})
    level = 1
    for t in itertools.takewhile(lambda t: t <= last + 2 * renotify, ticks):
        if read_ratio(t) >= ratio:
            return [*out, (rule, tenant, broadcast, "resolve", level, deadline, t)]
        if level < 3 and t >= deadline + level * renotify:
            level += 1
            out.append((rule, tenant, broadcast, "escalate", level, deadline, t))
    return out
