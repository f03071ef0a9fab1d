"""A scripted data set where each escalation rule has something to find (SPEC §5), one tenant
per story, all of it in event time two hours ago:

- `outage`: DE/push fails 60 % from 300 s to 660 s (FR/push stays healthy): opens, reaches
  level 3 with `renotify_s` 120, resolves once the window drains.
- `flap`: BR/email alternates minutes of 25 % and 15 % failures for 30 minutes, then none:
  opens once and resolves only after the failures stop.
- `letters`: US/sms dead-letters one delivery a second for 180 s among five good ones.
- `backlog`: 1100 JP/in_app deliveries pending from the start, 1050 delivered at ~25 min
  (resolves); the same in KR with 950 delivered (150 stay pending: open at level 3).
- `critical`: broadcast c1 (critical, 120 s deadline) half read at its deadline, 90 % later;
  c2 (high) read in time; c3 (normal) never read.

At 3000 s every input partition gets one last event, so event time passes every story's end
without the idle rule (which would move event time to the wall clock mid-test).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import orjson

from herald.load.produce import SimEvent
from herald.load.traffic import rfc3339
from herald.model import topics
from tests.e2e import PARTITIONS, partition_of

S = 1000
CONFIG = """
[escalations.region_failure_rate]
renotify_s = 120

[escalations.dead_letter_spike]
open_at = 50
"""


class Script:
    def __init__(self, start_ms: int) -> None:
        self.t0, self.events, self._ids = start_ms, [], itertools.count()
        self.events: list[SimEvent]

    def add(self, topic: str, kind: str, s: float, tenant: str, broadcast: str,
            **fields: Any) -> None:  # fmt: skip
        event = {"event_id": f"e{next(self._ids)}", "tenant_id": tenant, "schema_version": 1,
                 "occurred_at": rfc3339(self.t0 + int(s * S)), "type": kind,
                 "broadcast_id": broadcast, **fields}  # fmt: skip
        self.events.append(SimEvent(topic, broadcast.encode(), orjson.dumps(event), event))

    def attempt(self, s: float, tenant: str, region: str, channel: str, failed: bool,
                retryable: bool = True) -> None:  # fmt: skip
        who = {"user_id": f"u{next(self._ids)}", "region": region, "channel": channel}
        if failed:
            self.add(topics.DELIVERIES, "failed", s, tenant, "b1", **who, attempt=1,
                     error_code="timeout" if retryable else "blocked", retryable=retryable)
        else:
            self.add(topics.DELIVERIES, "delivered", s, tenant, "b1", **who, attempt=1)

    def ending(self, s: float) -> list[SimEvent]:
        """The events in event-time order (as a producer would send them live), after one
        last event at `s` on every input partition, so event time passes every story's end."""
        for p in range(PARTITIONS):
            who = {"user_id": f"tick-{p}", "region": "XX", "channel": "push"}
            self.add(topics.DELIVERIES, "delivered", s, "tick", "tick", **who, attempt=1)
            self.add(topics.ACKS, "received", s, "tick", "tick", **who)
        self.events.sort(key=lambda e: e.event["occurred_at"] if e.event else "")
        return self.events


def scripted(start_ms: int | None = None) -> list[SimEvent]:
    """The data set, in event-time order (as a producer would send it live)."""
    script = Script(start_ms or (int(time.time()) // 60 - 120) * 60 * S)
    for s in range(1200):
        script.attempt(s, "outage", "DE", "push", 300 <= s < 660 and s % 10 < 6)
        script.attempt(s + 0.5, "outage", "FR", "push", False)
    for s in range(2400):
        minute_bad = 5 if (s // 60) % 2 == 0 else 3  # of every 20 attempts: 25 % or 15 %
        script.attempt(s + 0.25, "flap", "BR", "email", s < 1800 and s % 20 < minute_bad)
    for s in range(600):
        for n in range(5):
            script.attempt(s + n / 10, "letters", "US", "sms", False)
        if 200 <= s < 380:
            script.attempt(s + 0.75, "letters", "US", "sms", True, retryable=False)
    _backlog(script)
    _critical(script)
    return script.ending(3000)


def partition(msg: SimEvent) -> int:
    """Tick events to the partition they name; the rest by content."""
    assert msg.event is not None
    if msg.event["tenant_id"] == "tick":
        return int(msg.event["user_id"].removeprefix("tick-"))
    return partition_of(msg)


def _backlog(script: Script) -> None:
    for region, delivered in (("JP", 1050), ("KR", 950)):
        for i in range(1100):
            who = {"user_id": f"{region}{i}", "region": region, "channel": "in_app", "attempt": 1}
            script.add(topics.DELIVERIES, "pending", i / 10, "backlog", "b2", **who)
            if i < delivered:
                script.add(topics.DELIVERIES, "delivered", 1500 + i / 10, "backlog", "b2",
                           **who)  # fmt: skip


def _critical(script: Script) -> None:
    plans = {"c1": ("critical", 50, 45), "c2": ("high", 95, 0), "c3": ("normal", 0, 0)}
    for broadcast, (priority, read_early, read_late) in plans.items():
        attrs: dict[str, Any] = {"priority": priority, "channels": ["push"], "target_count": 100}
        if priority != "normal":
            attrs["ack_deadline_s"] = 120
        script.add(topics.BROADCASTS, "created", 99, "critical", broadcast, **attrs)
        script.add(topics.BROADCASTS, "sent", 100, "critical", broadcast, **attrs)
        for i in range(100):
            who = {"user_id": f"r{i}", "region": "DE", "channel": "push"}
            script.add(topics.DELIVERIES, "delivered", 101 + i / 10, "critical", broadcast,
                       **who, attempt=1)  # fmt: skip
            if i < read_early:
                script.add(topics.ACKS, "read", 120 + i / 5, "critical", broadcast, **who)
            elif i < read_early + read_late:
                script.add(topics.ACKS, "read", 300 + (i - read_early), "critical", broadcast,
                           **who)  # fmt: skip


QUOTA_CONFIG = """
[escalations.tenant_quota.quotas]
heavy = 2
light = 2
"""
QUOTA_END_S = 1800


def quota_story(start_ms: int) -> list[SimEvent]:
    """tenant_quota's story, quotas 2 events/s (QUOTA_CONFIG), 30 minutes of event time:

    - `heavy`: 3 events/s (a delivery queued, delivered, read) for 8 minutes, opens once the
      5-minute average passes 2/s; 1/s for 12 minutes, resolves once it is under 1.6/s;
      3/s again until the end, where it is open. Its broadcast's lifecycle events are not
      metered, and every 10th event is sent twice (a duplicate, counted once).
    - `light`: 1.5 events/s, under its quota throughout; `free`: 4/s, and no quota.
    """
    script = Script(start_ms)
    script.add(topics.BROADCASTS, "created", 0, "heavy", "h1", channels=["push"])
    script.add(topics.BROADCASTS, "sent", 0, "heavy", "h1", channels=["push"])
    for s in range(QUOTA_END_S - 1):
        per_s = 3 if s < 480 or s >= 1200 else 1
        for n in range(per_s):
            kind = ("queued", "delivered", "read")[n]
            topic = topics.ACKS if kind == "read" else topics.DELIVERIES
            script.add(topic, kind, s + n / 4, "heavy", "h1", user_id=f"u{s}", region="DE",
                       channel="push", **({} if kind == "read" else {"attempt": 1}))  # fmt: skip
        for n in range(4):
            script.attempt(s + n / 4, "free", "FR", "sms", False)
        for n in range(1 + s % 2):  # 1.5/s
            script.attempt(s + 0.1 + n / 2, "light", "FR", "sms", False)
    heavy = [m for m in script.events if m.event and m.event["tenant_id"] == "heavy"]
    script.events += heavy[::10]
    return script.ending(QUOTA_END_S)
