"""One `herald.signals` partition's escalations: the subjects it owns, the shards' clocks,
and the ticks to run as the slowest shard's clock passes whole seconds.

The board works on any mutable mapping of JSON values — a Faust table in the worker, a dict
in tests — under two kinds of key: `clock/<partition>` (shard clocks, the last tick, and
each subject's next tick, so a tick loads only the subjects it concerns) and the subject ids.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from herald.tables.escalations import Rule, Subject
from herald.tables.signals import FIELDS, SECOND_MS

State = MutableMapping[str, Any]


def subject_id(key: list[str]) -> str:
    return "\x1f".join(key)


class Board:
    """Applies shard signal messages for one partition and returns the transitions."""

    def __init__(self, state: State, partition: int, shards: int,
                 rules: dict[str, Rule]) -> None:  # fmt: skip
        self.state, self.shards, self.rules = state, shards, rules
        self.clock_key = f"clock/{partition}"
        clock = state.get(self.clock_key) or {"clocks": {}, "at": None, "next": {}}
        self.clocks: dict[str, int] = clock["clocks"]
        self.at: int | None = clock["at"]
        self.next: dict[str, int | None] = clock["next"]
        self._loaded: dict[str, Subject] = {}

    def apply(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """Fold one signals message in; run the ticks its clocks let through."""
        offsets: dict[str, int] = message["offsets"]
        for _shard, tenant, broadcast, sent_ms, deadline_s in message["b"]:
            subject = self._subject(["critical_unread", tenant, broadcast])
            if subject is not None:
                subject.timing, subject.stale = [sent_ms, deadline_s], True
        for shard, *key, second, counts in _deltas(message["d"]):
            subject = self._subject(key)
            if subject is not None and subject.seq.get(str(shard), -1) < offsets[str(shard)]:
                subject.add(second, counts, self.rules[subject.rule].window_ms)
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
        subject = self._loaded.get(sid)
        if subject is None:
            stored = self.state.get(sid)
            subject = Subject.from_state(stored) if stored else Subject(key, at=self.at)
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
                transitions += subject.advance(self.rules[subject.rule], self.at)
        transitions.sort(key=lambda t: (t["occurred_at"], t["rule"], t["subject"]))
        return transitions

    def _save(self) -> None:
        for sid, subject in self._loaded.items():
            rule = self.rules[subject.rule]
            if subject.idle():
                self.next.pop(sid, None)
                if sid in self.state:
                    del self.state[sid]
            else:
                self.next[sid] = subject.next_tick(rule)
                self.state[sid] = subject.to_state()
        self._loaded.clear()
        self.state[self.clock_key] = {"clocks": self.clocks, "at": self.at, "next": self.next}


def _deltas(rows: list[list[Any]]) -> list[list[Any]]:
    """[shard, rule, *key, second, *counts] rows as [shard, rule, *key, second, counts]."""
    out = []
    for row in rows:
        width = len(FIELDS[row[1]])
        out.append([*row[: -width - 1], row[-width - 1], row[-width:]])
    return out
