"""One `herald.signals` partition's escalations: the subjects it owns, the shards' clocks,
and the ticks to run as the slowest shard's clock passes whole seconds.

The board works on any mutable mapping of JSON values — a Faust table in the worker, a dict
in tests — under three kinds of key: `clock/<partition>` (shard clocks, the last tick, each
subject's next tick, so a tick loads only the subjects it concerns, and a version), the
subject ids, and `log/<partition>/<n>`: the messages applied since the last checkpoint.

Writing every subject a message touched cost a table write and a changelog record per
subject and message, twenty-odd per message on the bench load: most of what the agent cost.
So a message is logged as it came, one write, and the subjects and the clock are written at
a checkpoint, when the caller asks (the agent: once a second per partition). The process
keeps the live state in a `Cache`, valid while the stored version is the one it wrote and
nobody logged past it (another owner, or a recovery, does). Without it the board resumes
from the checkpoint and applies the logged messages again, in order: the same state, and the
same transitions, already sent, so they are not returned again. A log entry carries the
checkpoint's version: entries a crash left behind an older checkpoint are not replayed.

Most ticks only move seconds through a window. A subject is written at a checkpoint when it
got data or a transition since the last one, or has moved `RESTATE_MS` past what is stored.
After a restart (or on another host) such a subject resumes from its stored state and runs
those ticks again: the same transitions, sent again, which the publisher drops.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from herald.tables.escalations import Rule, Subject
from herald.tables.signals import SECOND_MS, grouped

State = MutableMapping[str, Any]
RESTATE_MS = 60_000


@dataclass
class Cache:
    """A partition's live board in this process: the clocks, the subjects and what changed
    since the last checkpoint (`version`), with the `logged` messages after it."""

    version: int = -1
    logged: int = 0
    clocks: dict[str, int] = field(default_factory=dict)
    at: int | None = None
    next: dict[str, int | None] = field(default_factory=dict)
    subjects: dict[str, Subject] = field(default_factory=dict)
    stored_at: dict[str, int | None] = field(default_factory=dict)  # `at` of what is stored
    touched: set[str] = field(default_factory=set)  # loaded since the checkpoint
    dirty: set[str] = field(default_factory=set)  # with data or a transition since then
    gone: set[str] = field(default_factory=set)  # idle since then: stored, to delete

    def resume(self, checkpoint: dict[str, Any]) -> None:
        """Start again from a stored checkpoint (copied: the live board changes in place)."""
        self.version, self.logged, self.at = checkpoint["v"], 0, checkpoint["at"]
        self.clocks, self.next = dict(checkpoint["clocks"]), dict(checkpoint["next"])
        for held in (self.subjects, self.stored_at, self.touched, self.dirty, self.gone):
            held.clear()


def subject_id(key: list[str]) -> str:
    return "\x1f".join(key)


def _subject_rows(message: dict[str, Any]) -> list[list[Any]]:
    """A message's rows, one per subject: [rule, *subject, [seconds], [counts]]. Messages
    sent before session 12 have a row per subject and second ("m"), and before session 11
    a row per shard too ("d": [shard, rule, ...]): a message is applied to a subject for all
    its shards or none (`Subject.unseen`), so the shard is not needed to apply it once."""
    if "s" in message:
        return message["s"]  # type: ignore[no-any-return]
    if "m" in message:
        return grouped(message["m"])
    return grouped([row[1:] for row in message["d"]])


class Board:
    """Applies shard signal messages for one partition and returns the transitions."""

    def __init__(self, state: State, partition: int, shards: int, rules: dict[str, Rule],
                 cache: Cache) -> None:  # fmt: skip
        self.state, self.shards, self.rules, self.cache = state, shards, rules, cache
        self.clock_key, self.log_key = f"clock/{partition}", f"log/{partition}/"
        self._loaded: dict[str, Subject] = {}
        self._changed: set[str] = set()
        stored = state.get(self.clock_key) or {"clocks": {}, "at": None, "next": {}, "v": 0}
        if cache.version != stored["v"] or self._logged(cache.logged, stored["v"]):
            self._resume(stored)

    def apply(self, message: dict[str, Any], checkpoint: bool = True) -> list[dict[str, Any]]:
        """Fold one signals message in and run the ticks its clocks let through; then log
        it, or write the checkpoint."""
        transitions = self._step(message)
        if checkpoint:
            self._checkpoint()
        else:
            self.state[f"{self.log_key}{self.cache.logged}"] = {"v": self.cache.version,
                                                                "m": message}  # fmt: skip
            self.cache.logged += 1
        return transitions

    def _logged(self, n: int, version: int) -> dict[str, Any] | None:
        entry = self.state.get(f"{self.log_key}{n}")
        return entry["m"] if entry and entry["v"] == version else None

    def _resume(self, stored: dict[str, Any]) -> None:
        """The checkpoint, then the messages logged after it (their transitions were sent)."""
        cache = self.cache
        cache.resume(stored)
        while (message := self._logged(cache.logged, cache.version)) is not None:
            self._step(message)
            cache.logged += 1

    def _step(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        offsets: dict[str, int] = message["offsets"]
        for _shard, tenant, broadcast, sent_ms, deadline_s in message["b"]:
            subject = self._subject(["critical_unread", tenant, broadcast])
            if subject is not None:
                subject.timing, subject.stale = [sent_ms, deadline_s], True
                self._changed.add(subject_id(subject.key))
        for *key, seconds, counts in _subject_rows(message):
            subject = self._subject(key)
            if subject is not None and subject.unseen(offsets):
                subject.add(seconds, counts, self.rules[subject.rule].window_ms)
                self._changed.add(subject_id(key))
        for subject in self._loaded.values():
            for shard, offset in offsets.items():
                subject.seq[shard] = max(subject.seq.get(shard, -1), offset)
        clocks = self.cache.clocks
        for shard, clock in message["clocks"].items():
            if clock is not None:
                clocks[shard] = max(clocks.get(shard, clock), clock)
        transitions = self._tick()
        self._settle()
        return transitions

    def _subject(self, key: list[str]) -> Subject | None:
        if key[0] not in self.rules:
            return None  # a rule switched off in the config
        sid, cache = subject_id(key), self.cache
        subject = self._loaded.get(sid) or cache.subjects.get(sid)
        if subject is None:
            stored = None if sid in cache.gone else self.state.get(sid)
            cache.gone.discard(sid)
            subject = Subject.from_state(stored) if stored else Subject(key, at=cache.at)
            cache.stored_at[sid] = subject.at if stored else None
        self._loaded[sid] = subject
        return subject

    def _tick(self) -> list[dict[str, Any]]:
        """Every shard has a clock: run the ticks up to the slowest one's last whole second."""
        cache = self.cache
        if len(cache.clocks) < self.shards:
            return []
        slowest = min(cache.clocks.values())
        tick = slowest - slowest % SECOND_MS
        if cache.at is None or tick > cache.at:
            cache.at = tick
        due = {sid for sid, t in cache.next.items() if t is not None and t <= cache.at}
        transitions = []
        for sid in sorted(due | set(self._loaded)):
            subject = self._subject(sid.split("\x1f"))
            if subject is not None:
                moved = subject.advance(self.rules[subject.rule], cache.at)
                if moved:
                    self._changed.add(sid)
                transitions += moved
        transitions.sort(key=lambda t: (t["occurred_at"], t["rule"], t["subject"]))
        return transitions

    def _settle(self) -> None:
        """Keep the loaded subjects live (or forget the idle ones) until the checkpoint."""
        cache = self.cache
        for sid, subject in self._loaded.items():
            if subject.idle():
                cache.next.pop(sid, None)
                cache.subjects.pop(sid, None)
                cache.dirty.discard(sid)
                if cache.stored_at.pop(sid, None) is not None:
                    cache.gone.add(sid)
                continue
            cache.next[sid] = subject.next_tick(self.rules[subject.rule])
            cache.subjects[sid] = subject
            cache.touched.add(sid)
            if sid in self._changed:
                cache.dirty.add(sid)
        self._loaded.clear()
        self._changed.clear()

    def _checkpoint(self) -> None:
        """Write what must survive a restart (see the module's note), the clock, and only
        then forget the log: a crash in between replays nothing twice (versions differ)."""
        cache, state = self.cache, self.state
        for sid in cache.touched:
            subject = cache.subjects.get(sid)
            if subject is None:
                continue  # idle since: in `gone` if it was stored
            stored_at = cache.stored_at.get(sid)
            behind = stored_at is None or (subject.at or 0) - stored_at >= RESTATE_MS
            if sid in cache.dirty or behind:
                state[sid] = subject.to_state()
                cache.stored_at[sid] = subject.at
        for sid in cache.gone:
            state.pop(sid, None)
        cache.version += 1
        state[self.clock_key] = {"clocks": dict(cache.clocks), "at": cache.at,
                                 "next": dict(cache.next), "v": cache.version}  # fmt: skip
        for n in range(cache.logged):
            state.pop(f"{self.log_key}{n}", None)
        cache.logged = 0
        cache.touched.clear()
        cache.dirty.clear()
        cache.gone.clear()
