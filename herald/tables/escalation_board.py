"""One `herald.signals` partition's escalations: the subjects it owns, the shards' clocks,
and the ticks to run as the slowest shard's clock passes whole seconds.

The board works on any mutable mapping of JSON values — a Faust table in the worker, a dict
in tests — under two kinds of key: `clock/<partition>` (shard clocks, the last tick, each
subject's next tick, so a tick loads only the subjects it concerns, and a version) and the
subject ids.

Most ticks only move seconds through a window. A subject is written when it got data or a
transition, or has moved `RESTATE_MS` past what is stored; in between the process keeps it
in a `Cache`. After a restart (or on another host) a subject resumes from its stored state
and runs those ticks again: the same transitions, sent again, which the publisher drops.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from herald.tables.escalations import Rule, Subject
from herald.tables.signals import FIELDS, SECOND_MS

State = MutableMapping[str, Any]
RESTATE_MS = 60_000
_WIDTHS = {rule: len(fields) for rule, fields in FIELDS.items()}


@dataclass
class Cache:
    """A partition's subjects as this process last left them; valid while the stored
    version is the one it wrote (another owner, or a recovery, changes it)."""

    version: int = -1
    subjects: dict[str, Subject] = field(default_factory=dict)
    stored_at: dict[str, int | None] = field(default_factory=dict)


def subject_id(key: list[str]) -> str:
    return "\x1f".join(key)


class Board:
    """Applies shard signal messages for one partition and returns the transitions."""

    def __init__(self, state: State, partition: int, shards: int, rules: dict[str, Rule],
                 cache: Cache) -> None:  # fmt: skip
        self.state, self.shards, self.rules = state, shards, rules
        self.clock_key = f"clock/{partition}"
        clock = state.get(self.clock_key) or {"clocks": {}, "at": None, "next": {}, "v": 0}
        self.clocks: dict[str, int] = clock["clocks"]
        self.at: int | None = clock["at"]
        self.next: dict[str, int | None] = clock["next"]
        if cache.version != clock["v"]:
            cache.subjects.clear()
            cache.stored_at.clear()
        self.cache, self.version = cache, clock["v"]
        self._loaded: dict[str, Subject] = {}
        self._changed: set[str] = set()

    def apply(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """Fold one signals message in; run the ticks its clocks let through."""
        offsets: dict[str, int] = message["offsets"]
        for _shard, tenant, broadcast, sent_ms, deadline_s in message["b"]:
            subject = self._subject(["critical_unread", tenant, broadcast])
            if subject is not None:
                subject.timing, subject.stale = [sent_ms, deadline_s], True
                self._changed.add(subject_id(subject.key))
        for row in message["d"]:  # [shard, rule, *subject, second, *counts]
            width = _WIDTHS[row[1]]
            subject = self._subject(row[1 : -width - 1])
            shard = str(row[0])
            if subject is not None and subject.seq.get(shard, -1) < offsets[shard]:
                subject.add(row[-width - 1], row[-width:], self.rules[subject.rule].window_ms)
                self._changed.add(subject_id(subject.key))
        for subject in self._loaded.values():
            for shard, offset in offsets.items():
                subject.seq[shard] = max(subject.seq.get(shard, -1), offset)
        for shard, clock in message["clocks"].items():
            if clock is not None:
                self.clocks[shard] = max(self.clocks.get(shard, clock), clock)
        transitions = self._tick()
        self._save()
        return transitions

    def _subject(self, key: list[str]) -> Subject | None:
        if key[0] not in self.rules:
            return None  # a rule switched off in the config
        sid = subject_id(key)
        subject = self._loaded.get(sid) or self.cache.subjects.get(sid)
        if subject is None:
            stored = self.state.get(sid)
            subject = Subject.from_state(stored) if stored else Subject(key, at=self.at)
            self.cache.stored_at[sid] = subject.at if stored else None
        self._loaded[sid] = subject
        return subject

    def _tick(self) -> list[dict[str, Any]]:
        """Every shard has a clock: run the ticks up to the slowest one's last whole second."""
        if len(self.clocks) < self.shards:
            return []
        slowest = min(self.clocks.values())
        tick = slowest - slowest % SECOND_MS
        if self.at is None or tick > self.at:
            self.at = tick
        due = {sid for sid, t in self.next.items() if t is not None and t <= self.at}
        transitions = []
        for sid in sorted(due | set(self._loaded)):
            subject = self._subject(sid.split("\x1f"))
            if subject is not None:
                moved = subject.advance(self.rules[subject.rule], self.at)
                if moved:
                    self._changed.add(sid)
                transitions += moved
        transitions.sort(key=lambda t: (t["occurred_at"], t["rule"], t["subject"]))
        return transitions

    def _save(self) -> None:
        """Write what must survive a restart (see the module's note); the rest stays cached."""
        for sid, subject in self._loaded.items():
            stored_at = self.cache.stored_at.get(sid)
            if subject.idle():
                self.next.pop(sid, None)
                self.cache.subjects.pop(sid, None)
                self.cache.stored_at.pop(sid, None)
                if stored_at is not None or sid in self._changed:
                    self.state.pop(sid, None)
                continue
            self.next[sid] = subject.next_tick(self.rules[subject.rule])
            self.cache.subjects[sid] = subject
            behind = stored_at is None or (subject.at or 0) - stored_at >= RESTATE_MS
            if sid in self._changed or behind:
                self.state[sid] = subject.to_state()
                self.cache.stored_at[sid] = subject.at
        self._loaded.clear()
        self.version += 1
        self.cache.version = self.version
        self.state[self.clock_key] = {"clocks": self.clocks, "at": self.at, "next": self.next,
                                      "v": self.version}  # fmt: skip
