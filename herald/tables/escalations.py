"""Escalation rules on event time (SPEC §5), as pure state: one `Subject` per rule and subject
(a region-channel, a broadcast, ...), fed the shards' per-second deltas and advanced tick by
tick as the watermark passes whole seconds.

At tick T (a second boundary) the data of every second before T is in. A sliding rule sees
the seconds in [T - window, T); a level rule (the pending backlog, a broadcast's totals) sees
all of them. A subject is evaluated only at the ticks where its value can change — a second
entering or leaving its window, a level timer, a deadline — so a month's replay costs what its
data costs, and a replay meets the same ticks as the live run: same transitions, same
`occurred_at`. Deltas for a second already passed (late events) count from the next tick on.

Hysteresis: a rule opens above its opening threshold and resolves only below its resolving
one. An escalation open 1x `renotify_s` is raised to level 2, 2x to level 3.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
from dataclasses import dataclass, field
from typing import Any

from herald.config import (
    CriticalUnread,
    DeadLetterSpike,
    Escalations,
    FailureRate,
    PendingBacklog,
    TenantQuota,
)
from herald.tables.signals import FIELDS, SECOND_MS

MAX_LEVEL = 3
KEEP_CHECKED_MS = 86_400_000  # a broadcast checked at its deadline is remembered a day


@dataclass
class Verdict:
    """A rule's reading of a subject at one tick."""

    value: float
    opens: bool
    resolves: bool
    threshold: float  # the opening one
    resolve_threshold: float
    text: str


class Rule:
    """How one rule reads a subject's sums. `window_ms` None: a level, not a sliding sum."""

    name = ""
    window_ms: int | None = None

    def __init__(self, renotify_s: int) -> None:
        self.renotify_ms = renotify_s * 1000

    def verdict(self, subject: Subject) -> Verdict:
        raise NotImplementedError


class FailureRateRule(Rule):
    name = "region_failure_rate"

    def __init__(self, config: FailureRate) -> None:
        super().__init__(config.renotify_s)
        self.config, self.window_ms = config, config.window_s * SECOND_MS

    def verdict(self, subject: Subject) -> Verdict:
        delivered, failed = subject.sums
        attempts, c = delivered + failed, self.config
        rate = failed / attempts if attempts else 0.0
        return Verdict(rate, rate > c.open_above and attempts >= c.min_attempts,
                       rate < c.resolve_below, c.open_above, c.resolve_below,
                       f"{rate:.1%} of {attempts} deliveries failed in the last"
                       f" {c.window_s}s (opens above {c.open_above:.0%},"
                       f" resolves below {c.resolve_below:.0%})")  # fmt: skip


class CountRule(Rule):
    """A count against `open_at` / `resolve_below`: dead letters in a window, the backlog."""

    what = ""

    def __init__(self, config: DeadLetterSpike | PendingBacklog, window_s: int | None) -> None:
        super().__init__(config.renotify_s)
        self.config = config
        self.window_ms = None if window_s is None else window_s * SECOND_MS

    def verdict(self, subject: Subject) -> Verdict:
        n, c = subject.sums[0], self.config
        return Verdict(n, n >= c.open_at, n < c.resolve_below, c.open_at, c.resolve_below,
                       f"{n} {self.what} (opens at {c.open_at},"
                       f" resolves below {c.resolve_below})")  # fmt: skip


class DeadLetterRule(CountRule):
    name = "dead_letter_spike"

    def __init__(self, config: DeadLetterSpike) -> None:
        super().__init__(config, config.window_s)
        self.what = f"dead letters in the last {config.window_s}s"


class BacklogRule(CountRule):
    name = "pending_backlog"

    def __init__(self, config: PendingBacklog) -> None:
        super().__init__(config, None)
        self.what = f"deliveries pending longer than {config.older_than_s}s"


class UnreadRule(Rule):
    """Checked once, at sent + ack deadline; once open, resolves when the ratio reaches it."""

    name = "critical_unread"

    def __init__(self, config: CriticalUnread) -> None:
        super().__init__(config.renotify_s)
        self.ratio = config.ratio

    def verdict(self, subject: Subject) -> Verdict:
        delivered, read = subject.sums
        ratio = read / delivered if delivered else 0.0
        deadline = subject.deadline_ms()
        due = not subject.checked and deadline is not None and deadline <= (subject.at or 0)
        return Verdict(ratio, due and ratio < self.ratio, ratio >= self.ratio,
                       self.ratio, self.ratio,
                       f"{read} read of {delivered} delivered ({ratio:.0%}) at the ack"
                       f" deadline (needs {self.ratio:.0%})")  # fmt: skip


class QuotaRule(Rule):
    name = "tenant_quota"

    def __init__(self, config: TenantQuota) -> None:
        super().__init__(config.renotify_s)
        self.config, self.window_ms = config, config.window_s * SECOND_MS

    def verdict(self, subject: Subject) -> Verdict:
        quota = self.config.quotas.get(subject.tenant)
        rate = subject.sums[0] / self.config.window_s
        if quota is None:  # no quota (any more): nothing to hold open
            return Verdict(rate, False, True, 0.0, 0.0, "no quota configured")
        low = quota * self.config.resolve_ratio
        return Verdict(rate, rate > quota, rate < low, quota, low,
                       f"{rate:.0f} events/s over the last {self.config.window_s}s"
                       f" (quota {quota:g}, resolves below {low:g})")  # fmt: skip


def rules(config: Escalations) -> dict[str, Rule]:
    """The enabled rules by name."""
    built: list[Rule] = [
        UnreadRule(config.critical_unread),
        FailureRateRule(config.region_failure_rate),
        DeadLetterRule(config.dead_letter_spike),
        BacklogRule(config.pending_backlog),
        QuotaRule(config.tenant_quota),
    ]
    return {r.name: r for r in built if getattr(config, r.name).enabled}


def escalation_id(rule: str, tenant: str, subject: str, opened_ms: int) -> str:
    """Stable for a rule and subject until resolved (SPEC §5)."""
    text = "\x1f".join((rule, tenant, subject, str(opened_ms)))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@dataclass
class Subject:
    """One rule's state for one subject, JSON-able (`to_state`) for a Faust table.

    `buckets`: second -> counts not yet folded (sliding: until they leave the window), in
    ascending order of second (`add` keeps it so);
    `sums`: the value as of tick `at`; `seq`: the last offset applied per shard;
    `timing`: [sent ms, ack deadline s] (critical_unread); `open`: [id, opened ms, level]."""

    key: list[str]
    buckets: dict[int, list[int]] = field(default_factory=dict)
    sums: list[int] = field(default_factory=list)
    at: int | None = None
    seq: dict[str, int] = field(default_factory=dict)
    timing: list[Any] | None = None
    open: list[Any] | None = None
    stale: bool = False  # a late delta changed `sums`: evaluate at the next tick
    checked: bool = False  # critical_unread: the deadline was evaluated

    def __post_init__(self) -> None:
        if not self.sums:
            self.sums = [0] * len(FIELDS[self.rule])

    @property
    def rule(self) -> str:
        return self.key[0]

    @property
    def tenant(self) -> str:
        return self.key[1]

    @property
    def label(self) -> str:
        """The `subject` column: what the rule is about, within the tenant."""
        return "/".join(self.key[2:]) or self.tenant

    def to_state(self) -> dict[str, Any]:
        # Seconds and counts as two lists, copied at C speed: a subject is written with most
        # signals messages, its window holding up to `window_s` buckets. Copies, because Faust
        # serialises a changelog value later, when later messages may have changed these.
        # (Count lists are never changed in place, so a shallow copy is enough.)
        return {"key": self.key, "seconds": list(self.buckets),
                "counts": list(self.buckets.values()), "sums": self.sums, "at": self.at,
                "seq": dict(self.seq), "timing": self.timing,
                "open": None if self.open is None else list(self.open), "stale": self.stale,
                "checked": self.checked}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Subject:
        if "seconds" in state:
            buckets = dict(zip(state["seconds"], state["counts"], strict=True))
        else:  # written before session 6: [[second, *counts], ...]
            buckets = dict(sorted((b[0], b[1:]) for b in state["buckets"]))
        # Copies of what changes in place: the mapping may hold these very objects (a dict).
        opened = None if state["open"] is None else list(state["open"])
        return cls(state["key"], buckets, state["sums"], state["at"], dict(state["seq"]),
                   state["timing"], opened, state["stale"], state["checked"])  # fmt: skip

    def deadline_ms(self) -> int | None:
        if not self.timing or self.timing[0] is None or self.timing[1] is None:
            return None
        sent_ms, deadline_s = self.timing
        return int(sent_ms + deadline_s * 1000)

    # -- input ------------------------------------------------------------------------------

    def unseen(self, offsets: dict[str, int]) -> bool:
        """Whether the message with these shard offsets is new to this subject. Applying one
        advances `seq` to it on all its shards at once: a repeated message is behind or level
        on every shard, a new one ahead on those whose input moved (the others may be level)."""
        return any(self.seq.get(shard, -1) < offset for shard, offset in offsets.items())

    def add(self, seconds: list[int], counts: list[list[int]], window_ms: int | None) -> None:
        """A row's deltas, its seconds ascending. The seconds after every stored one and not
        yet passed (most of a row's) are appended at once; the buckets are sorted once if
        others came between them (the ticks bisect them)."""
        last, at, between = next(reversed(self.buckets), None), self.at, False
        for i, second in enumerate(seconds):
            if (last is None or second > last) and (at is None or second + SECOND_MS > at):
                self.buckets.update(zip(seconds[i:], counts[i:], strict=True))
                break
            if self._passed(second, counts[i], window_ms):
                continue
            bucket = self.buckets.get(second)
            if bucket is not None:
                self.buckets[second] = [a + b for a, b in zip(bucket, counts[i], strict=True)]
            else:
                self.buckets[second] = counts[i]
                between = between or (last is not None and second < last)
        if between:
            self.buckets = dict(sorted(self.buckets.items()))

    def _passed(self, second: int, counts: list[int], window_ms: int | None) -> bool:
        """A delta for a second the ticks passed counts from the next tick: folded in now.
        True when nothing is left to store (gone from the window, or a level rule's)."""
        if self.at is None or second + SECOND_MS > self.at:
            return False
        if window_ms is not None and second + SECOND_MS + window_ms <= self.at:
            return True  # it would already have left the window
        self._fold(counts, 1)
        self.stale = True
        return window_ms is None

    def _fold(self, counts: list[int], sign: int) -> None:
        self.sums = [s + sign * n for s, n in zip(self.sums, counts, strict=True)]

    # -- ticks ------------------------------------------------------------------------------

    def next_tick(self, rule: Rule) -> int | None:
        """The earliest tick after `at` where this subject's value or level can change: the
        first second still to enter, the oldest to leave (every stored one is still in the
        window), a timer. Called after every message, so no tick map is built."""
        after = self._after()
        wanted = self._timers(rule, after)
        if self.buckets:
            seconds = list(self.buckets)  # in order
            entering = bisect.bisect_right(seconds, after - SECOND_MS)
            if entering < len(seconds):
                wanted.append(seconds[entering] + SECOND_MS)
            if rule.window_ms is not None:
                wanted.append(seconds[0] + SECOND_MS + rule.window_ms)
        return min((t for t in wanted if t > after), default=None)

    def _after(self) -> int:
        return self.at if self.at is not None else -(2**62)

    def _timers(self, rule: Rule, after: int) -> list[int]:
        """Ticks that move no second: the levels still to come, the ack deadline not yet
        checked, the next tick after late data."""
        timers = []
        if self.open is not None:
            opened, level = self.open[1], self.open[2]
            timers += [opened + n * rule.renotify_ms for n in range(level, MAX_LEVEL)]
        deadline = self.deadline_ms()
        next_second = after - after % SECOND_MS + SECOND_MS
        if deadline is not None and not self.checked:
            timers.append(max(deadline, next_second))
        if self.stale:
            timers.append(next_second)
        return timers

    def _ticks(self, rule: Rule, until: int) -> dict[int, list[tuple[int, int]]]:
        """Tick in (at, until] -> the (second, +1 entering | -1 leaving) moves at it."""
        after, window = self._after(), rule.window_ms
        ticks: dict[int, list[tuple[int, int]]] = {}
        seconds = list(self.buckets)  # in order: only the seconds that move are visited
        moves = [(SECOND_MS, 1)] if window is None else [(SECOND_MS, 1), (SECOND_MS + window, -1)]
        for shift, sign in moves:  # entering at second + 1 s, leaving a window later
            first = bisect.bisect_right(seconds, after - shift)
            for second in seconds[first : bisect.bisect_right(seconds, until - shift)]:
                ticks.setdefault(second + shift, []).append((second, sign))
        for t in self._timers(rule, after):
            if after < t <= until:
                ticks.setdefault(t, [])
        return ticks

    def advance(self, rule: Rule, tick: int) -> list[dict[str, Any]]:
        """Evaluate every tick up to `tick`; returns the transitions, in order."""
        transitions = []
        ticks = self._ticks(rule, tick)
        pending = list(ticks)
        heapq.heapify(pending)
        while pending:
            t = heapq.heappop(pending)
            for second, sign in ticks.pop(t, ()):
                self._fold(self.buckets[second], sign)
                if sign < 0 or rule.window_ms is None:
                    del self.buckets[second]
            self.at, self.stale = t, False
            was_open = self.open is not None
            transitions += self._evaluate(rule, t)
            if not was_open and self.open is not None:  # its level timers start now
                for n in range(1, MAX_LEVEL):
                    if t + n * rule.renotify_ms <= tick and t + n * rule.renotify_ms not in ticks:
                        ticks[t + n * rule.renotify_ms] = []
                        heapq.heappush(pending, t + n * rule.renotify_ms)
        if self.at is None or self.at < tick:
            self.at = tick
        return transitions

    def _evaluate(self, rule: Rule, t: int) -> list[dict[str, Any]]:
        verdict = rule.verdict(self)
        deadline = self.deadline_ms()
        if deadline is not None and deadline <= t:
            self.checked = True  # critical_unread looks once, at the deadline
        if self.open is None:
            if not verdict.opens:
                return []
            self.open = [escalation_id(rule.name, self.tenant, self.label, t), t, 1]
            return [self._transition(verdict, "open", t, verdict.threshold)]
        if verdict.resolves:
            done = self._transition(verdict, "resolve", t, verdict.resolve_threshold)
            self.open = None
            return [done]
        opened, level = self.open[1], self.open[2]
        if level < MAX_LEVEL and t >= opened + level * rule.renotify_ms:
            self.open[2] = level + 1
            return [self._transition(verdict, "escalate", t, verdict.threshold)]
        return []

    def _transition(self, verdict: Verdict, state: str, t: int,
                    threshold: float) -> dict[str, Any]:  # fmt: skip
        assert self.open is not None
        escalation, opened, level = self.open
        return {"escalation_id": escalation, "tenant_id": self.tenant, "rule": self.rule,
                "subject": self.label, "level": level, "state": state,
                "value": round(verdict.value, 6), "threshold": threshold,
                "opened_at": opened, "occurred_at": t,
                "message": f"{self.rule} {self.label}: {verdict.text}"}  # fmt: skip

    def idle(self) -> bool:
        """Nothing left to count or watch: the subject may be forgotten."""
        if self.open is not None or self.buckets or self.stale:
            return False
        if self.rule == "critical_unread":  # remembered a while, so late reads cannot re-arm it
            deadline = self.deadline_ms()
            return deadline is None or (self.at or 0) > deadline + KEEP_CHECKED_MS
        return not any(self.sums)
