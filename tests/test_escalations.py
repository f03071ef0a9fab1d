"""Escalation rules as pure state (SPEC §5): the board's tick-by-tick evaluation against a
brute-force oracle that looks at every second, hysteresis, levels, deadlines, exactly-once
application of shard messages, and restarts from the stored state alone."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.config import Escalations, FailureRate, TenantQuota
from herald.tables.escalation_board import Board, Cache
from herald.tables.escalations import Subject, escalation_id, rules
from herald.tables.signals import grouped

S = 1000
T0 = 1_795_428_000_000
RULES = rules(Escalations(region_failure_rate=FailureRate(window_s=60, min_attempts=10,
                                                          renotify_s=120)))  # fmt: skip
REGION = ["region_failure_rate", "t1", "DE", "push"]


class Shards:
    """Shards sending signal messages to one partition's board, with increasing offsets."""

    def __init__(self, n: int, state: dict[str, Any] | None = None,
                 checkpoints: Iterator[bool] | None = None) -> None:  # fmt: skip
        self.n, self.offsets = n, [0] * n
        self.state: dict[str, Any] = {} if state is None else state
        self.cache = Cache()  # this process's; a new Shards is a new process
        self.checkpoints = checkpoints or itertools.repeat(True)  # per message: or logged
        self.transitions: list[dict[str, Any]] = []

    def send(self, shard: int, clock: int | None, deltas: list[list[Any]] = (),  # type: ignore[assignment]
             broadcasts: list[list[Any]] = (), again: bool = False) -> None:  # type: ignore[assignment]  # fmt: skip
        if not again:
            self.offsets[shard] += 1
        message = {"offsets": {str(shard): self.offsets[shard]}, "clocks": {str(shard): clock},
                   "s": grouped(deltas),
                   "b": [[shard, *row] for row in broadcasts], "partition": 0}  # fmt: skip
        board = Board(self.state, 0, self.n, RULES, self.cache)
        self.transitions += board.apply(message, next(self.checkpoints))

    def restarted(self) -> Shards:
        """A new process, with what the table holds (through JSON, as Faust stores it)."""
        again = Shards(self.n, orjson.loads(orjson.dumps(self.state)), self.checkpoints)
        again.offsets = self.offsets
        return again

    def all(self, clock: int) -> None:
        for shard in range(self.n):
            self.send(shard, clock)


def one_message(deltas: list[list[Any]], clock: int) -> dict[str, Any]:
    """What one shard (0) at offset 1 sends."""
    return {"offsets": {"0": 1}, "clocks": {"0": clock}, "s": grouped(deltas),
            "b": [], "partition": 0}


def oracle(per_second: dict[int, list[int]], end: int) -> list[tuple[str, int, int]]:
    """(state, level, occurred_at) of region_failure_rate, evaluating every second."""
    rule, out, opened = RULES["region_failure_rate"], [], None
    window, renotify = 60 * S, 120 * S
    level = 0
    for t in range(min(per_second) + S, end + S, S):
        delivered = sum(c[0] for s, c in per_second.items() if t - window <= s < t)
        failed = sum(c[1] for s, c in per_second.items() if t - window <= s < t)
        attempts = delivered + failed
        rate = failed / attempts if attempts else 0.0
        config = rule.config  # type: ignore[attr-defined]
        if opened is None:
            if rate > config.open_above and attempts >= config.min_attempts:
                opened, level = t, 1
                out.append(("open", 1, t))
        elif rate < config.resolve_below:
            out.append(("resolve", level, t))
            opened = None
        elif level < 3 and t >= opened + level * renotify:
            level += 1
            out.append(("escalate", level, t))
    return out


seconds = st.dictionaries(
    st.integers(0, 400), st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1
)


@settings(max_examples=60, deadline=None)
@given(data=seconds, cuts=st.lists(st.integers(1, 40), min_size=1), shards=st.integers(1, 3),
       resend=st.booleans(), checkpoints=st.lists(st.booleans(), min_size=1))  # fmt: skip
def test_board_matches_an_oracle_that_evaluates_every_second(
    data: dict[int, tuple[int, int]], cuts: list[int], shards: int, resend: bool,
    checkpoints: list[bool],
) -> None:  # fmt: skip
    """Counts spread over shards, sent in batches of any size (some twice), clocks moving
    at their own pace, checkpoints or not after any message: the transitions are exactly
    those of a second-by-second evaluation."""
    per_second = {T0 + s * S: list(c) for s, c in data.items()}
    end = max(per_second) + 700 * S
    board = Shards(shards, checkpoints=itertools.cycle(checkpoints))
    seconds_sorted = sorted(per_second)
    i = 0
    for step, cut in enumerate(cuts * 50):
        chunk = seconds_sorted[i : i + cut]
        i += cut
        if not chunk:
            break
        shard = step % shards
        deltas = [[*REGION, s, *per_second[s]] for s in chunk]
        # The other shards keep up in clock; this one brings the counts.
        board.send(shard, chunk[-1], deltas)
        if resend:
            board.send(shard, chunk[-1], deltas, again=True)
        for other in range(shards):
            if other != shard:
                board.send(other, chunk[-1])
    for t in range(max(per_second), end + S, 50 * S):
        board.all(t)
    board.all(end)
    got = [(t["state"], t["level"], t["occurred_at"]) for t in board.transitions]
    assert got == oracle(per_second, end)


def test_region_outage_opens_escalates_twice_and_resolves_with_one_id() -> None:
    shards = Shards(1)
    outage = [[*REGION, T0 + s * S, 0, 1] for s in range(400)]  # every attempt fails
    shards.send(0, T0 + 400 * S, outage)
    shards.send(0, T0 + 800 * S)
    states = [(t["state"], t["level"], t["occurred_at"] - T0) for t in shards.transitions]
    # 10 failures in the window at T0+10 s; levels at +120 s and +240 s; the last failure
    # (second 399) leaves the 60 s window at 460 s: nothing left, the rate is 0.
    assert states == [("open", 1, 10 * S), ("escalate", 2, 130 * S), ("escalate", 3, 250 * S),
                      ("resolve", 3, 460 * S)]  # fmt: skip
    ids = {t["escalation_id"] for t in shards.transitions}
    assert ids == {escalation_id("region_failure_rate", "t1", "DE/push", T0 + 10 * S)}
    assert shards.transitions[0]["subject"] == "DE/push"
    assert shards.transitions[0]["threshold"] == 0.2


def test_nothing_happens_until_every_shard_has_a_clock() -> None:
    shards = Shards(2)
    shards.send(0, T0 + 400 * S, [[*REGION, T0 + s * S, 0, 1] for s in range(100)])
    assert shards.transitions == []
    shards.send(1, T0 + 400 * S)
    assert [t["state"] for t in shards.transitions][:1] == ["open"]


def outage_steps() -> Steps:
    """(shard, clock s, deltas) of a region outage spread over two shards: it opens, rises
    two levels and resolves, with quiet ticks in between."""
    steps: Steps = []
    for clock in range(10, 320, 10):
        fails = [[*REGION, T0 + s * S, 1, 3] for s in range(clock - 10, clock) if clock <= 300]
        steps += [(0, clock, fails[:5]), (1, clock, fails[5:])]
    return [*steps, (0, 900, []), (1, 900, [])]


Steps = list[tuple[int, int, list[list[Any]]]]


def once(transitions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each transition passed on once, in the order first sent (as the publisher does)."""
    return list({(t["escalation_id"], t["state"], t["level"]): t for t in transitions}.values())


def uninterrupted(steps: Steps) -> list[dict[str, Any]]:
    """The transitions of `steps` on one process that checkpoints after every message."""
    whole = Shards(2)
    for shard, clock, deltas in steps:
        whole.send(shard, T0 + clock * S, deltas)
    return whole.transitions


def run(steps: Steps, shards: Shards, restarts: set[int]) -> list[dict[str, Any]]:
    """The transitions of `steps`, restarting the process before the given ones."""
    seen: list[dict[str, Any]] = []
    for i, (shard, clock, deltas) in enumerate(steps):
        if i in restarts:
            seen += shards.transitions
            shards = shards.restarted()
        shards.send(shard, T0 + clock * S, deltas)
    return once(seen + shards.transitions)


@settings(max_examples=40, deadline=None)
@given(checkpoints=st.lists(st.booleans(), min_size=1), restarts=st.sets(st.integers(0, 63)))
def test_a_restart_anywhere_resumes_from_the_checkpoint_and_the_log(
    checkpoints: list[bool], restarts: set[int]
) -> None:
    """A new process has only the table: the last checkpoint, the messages logged after it
    (applied again), subjects that were only ticking as last stored (their ticks run again).
    Nothing is lost; what comes twice is the same transition."""
    steps = outage_steps()
    whole = uninterrupted(steps)
    assert [t["state"] for t in whole] == ["open", "escalate", "escalate", "resolve"]
    assert run(steps, Shards(2, checkpoints=itertools.cycle(checkpoints)), restarts) == whole


def test_a_process_does_not_trust_its_board_after_another_owner_logged() -> None:
    """The partition moves to another process and back, nothing checkpointed meanwhile: the
    first one's live board misses what the other applied, and must resume from the table."""
    steps = outage_steps()
    first = Shards(2, checkpoints=itertools.repeat(False))
    other = Shards(2, first.state, itertools.repeat(False))  # the same table
    # The same shards' offsets, and the transitions in the order they were sent.
    other.offsets, other.transitions = first.offsets, first.transitions
    for i, (shard, clock, deltas) in enumerate(steps):
        owner = other if 20 <= i < 40 else first
        owner.send(shard, T0 + clock * S, deltas)
    assert once(first.transitions) == uninterrupted(steps)


def test_a_message_of_several_shards_applies_once_though_one_shard_did_not_move() -> None:
    """Rows are summed over a message's shards: a message is new to a subject when any of
    its shards moved past what the subject applied, and comes again level on all of them.
    Messages sent before the rows were grouped by subject (a row per second), or before
    they were summed (a row per shard too), read the same."""
    state: dict[str, Any] = {}
    cache = Cache()

    def bucket(offsets: dict[str, int], rows: dict[str, list[list[Any]]]) -> list[int]:
        message = {"offsets": offsets, "clocks": dict.fromkeys(offsets, T0), "b": [], **rows}
        Board(state, 0, 2, RULES, cache).apply(message)
        return cache.subjects["\x1f".join(REGION)].buckets[T0]

    by_subject = {"s": [[*REGION, [T0], [[1, 0]]]]}
    assert bucket({"0": 1, "1": 1}, by_subject) == [1, 0]
    assert bucket({"0": 2, "1": 1}, by_subject) == [2, 0]  # only shard 0 had new input
    assert bucket({"0": 2, "1": 1}, by_subject) == [2, 0]  # that message again
    by_second = {"m": [[*REGION, T0, 1, 0]]}  # sent before session 12
    assert bucket({"0": 3, "1": 2}, by_second) == [3, 0]
    assert bucket({"0": 3, "1": 2}, by_second) == [3, 0]
    per_shard = {"d": [[0, *REGION, T0, 0, 1]]}  # before session 11
    assert bucket({"0": 4}, per_shard) == [3, 1]
    assert bucket({"0": 4}, per_shard) == [3, 1]


def test_log_entries_of_an_older_checkpoint_are_not_applied() -> None:
    """A crash after a checkpoint's clock, before its log was cleared, leaves entries of the
    version before: they are in the checkpoint already."""
    message = one_message([[*REGION, T0, 1, 0]], T0 + S)
    state = {"clock/0": {"clocks": {"0": T0 + S}, "at": T0 + S, "next": {}, "v": 3},
             "log/0/0": {"v": 2, "m": message}}  # fmt: skip
    cache = Cache()
    Board(state, 0, 1, RULES, cache)
    assert (cache.version, cache.logged, cache.subjects) == (3, 0, {})
    state["log/0/0"]["v"] = 3
    Board(state, 0, 1, RULES, cache)
    assert (cache.version, cache.logged, list(cache.subjects)) == (3, 1, ["\x1f".join(REGION)])


def test_critical_unread_opens_at_the_deadline_and_resolves_when_read() -> None:
    shards = Shards(1)
    key = ["critical_unread", "t1", "b9"]
    sent = T0 + 500  # not on a second: the deadline tick is exact
    shards.send(0, T0, broadcasts=[["t1", "b9", sent, 60]])
    shards.send(0, T0 + 30 * S, [[*key, T0 + 10 * S, 100, 0], [*key, T0 + 20 * S, 0, 50]])
    shards.send(0, T0 + 90 * S, [[*key, T0 + 70 * S, 0, 39]])
    assert [(t["state"], t["occurred_at"]) for t in shards.transitions] == [("open", sent + 60 * S)]
    assert shards.transitions[0]["value"] == 0.5
    shards.send(0, T0 + 100 * S, [[*key, T0 + 95 * S, 0, 1]])  # 90 of 100: resolved
    assert [t["state"] for t in shards.transitions] == ["open", "resolve"]
    assert shards.transitions[1]["occurred_at"] == T0 + 96 * S


def test_critical_read_in_time_never_opens_and_late_facts_do_not_rearm_it() -> None:
    shards = Shards(1)
    key = ["critical_unread", "t1", "b9"]
    shards.send(0, T0, broadcasts=[["t1", "b9", T0, 60]])
    shards.send(0, T0 + 50 * S, [[*key, T0 + 10 * S, 100, 0], [*key, T0 + 20 * S, 0, 95]])
    shards.send(0, T0 + 200 * S)
    shards.send(0, T0 + 300 * S, broadcasts=[["t1", "b9", T0, 60]])  # `completed` re-sends it
    shards.send(0, T0 + 400 * S)
    assert shards.transitions == []


def test_hysteresis_between_the_thresholds_holds_the_state() -> None:
    """A rate between 10 % and 20 % neither opens a closed escalation nor resolves an open one."""
    shards = Shards(1)
    calm = [[*REGION, T0 + s * S, 17, 3] for s in range(0, 120)]  # 15 %: never opens
    shards.send(0, T0 + 120 * S, calm)
    assert shards.transitions == []
    bad = [[*REGION, T0 + s * S, 10, 10] for s in range(120, 180)]  # 50 %: opens
    shards.send(0, T0 + 180 * S, bad)
    swing = [[*REGION, T0 + s * S, *((16, 4) if s % 2 else (18, 2))] for s in range(180, 400)]
    shards.send(0, T0 + 400 * S, swing)  # 10-20 %: stays open
    assert [t["state"] for t in shards.transitions if t["state"] != "escalate"] == ["open"]


def test_tenant_quota_opens_over_the_quota_and_resolves_below_its_share() -> None:
    """10 events/s against a quota of 5 over a 10 s window: opens once the window's average
    passes 5/s, resolves once it falls below 4/s (0.8 of the quota)."""
    config = Escalations(tenant_quota=TenantQuota(window_s=10, quotas={"t1": 5}))
    state: dict[str, Any] = {}
    busy = [["tenant_quota", "t1", T0 + s * S, 10] for s in range(20)]
    first = Board(state, 0, 1, rules(config), Cache()).apply(one_message(busy, T0 + 40 * S))
    # Average over [t-10 s, t): 10 * n / 10 with n seconds in; > 5 at n = 6; after the last
    # second (19) it falls below 4 when fewer than 4 seconds remain: t = 27 s.
    assert [(t["state"], t["occurred_at"] - T0) for t in first] == [("open", 6 * S),
                                                                   ("resolve", 27 * S)]
    assert first[0]["threshold"] == 5 and first[1]["threshold"] == 4


def test_a_tenant_without_quota_has_nothing_to_hold_open() -> None:
    config = Escalations(tenant_quota=TenantQuota(window_s=10, quotas={"other": 1}))
    busy = [["tenant_quota", "t1", T0 + s * S, 100] for s in range(20)]
    board = Board({}, 0, 1, rules(config), Cache())
    assert board.apply(one_message(busy, T0 + 40 * S)) == []


def test_a_subject_stored_before_the_compact_layout_reads_the_same() -> None:
    """Subjects stored as [[second, *counts], ...] (before session 6) load unchanged."""
    subject = Subject(REGION, {T0: [3, 1], T0 + S: [2, 0]}, [5, 1], T0 + 2 * S, {"0": 7})
    compact = subject.to_state()
    legacy = {k: v for k, v in compact.items() if k not in ("seconds", "counts")}
    legacy["buckets"] = [[T0, 3, 1], [T0 + S, 2, 0]]
    assert Subject.from_state(legacy) == Subject.from_state(compact) == subject


def test_a_late_second_inside_the_window_counts_at_once_and_leaves_on_time() -> None:
    """Failures for second 5 arrive when the ticks are at 20 s, behind seconds 10-19 of
    deliveries: they count from the next tick (21 s) and leave the window at 5 + 1 + 60 s, before
    the seconds stored ahead of them."""
    shards = Shards(1)
    shards.send(0, T0 + 20 * S, [[*REGION, T0 + s * S, 10, 0] for s in range(10, 20)])
    shards.send(0, T0 + 21 * S, [[*REGION, T0 + 5 * S, 0, 100]])
    shards.send(0, T0 + 68 * S)  # past second 5's leaving, not yet second 10's
    got = [(t["state"], t["occurred_at"] - T0) for t in shards.transitions]
    assert got == [("open", 21 * S), ("resolve", 66 * S)]


def test_a_late_second_after_every_stored_one_counts_at_once_and_leaves_on_time() -> None:
    """Failures for second 15 arrive when the ticks are at 20 s, after the stored seconds
    0-9 of deliveries but already passed: they count from the next tick (21 s), not when
    second 15 would have entered, and leave the window at 15 + 1 + 60 s."""
    shards = Shards(1)
    shards.send(0, T0 + 20 * S, [[*REGION, T0 + s * S, 10, 0] for s in range(10)])
    shards.send(0, T0 + 21 * S, [[*REGION, T0 + 15 * S, 0, 100]])
    shards.send(0, T0 + 100 * S)
    got = [(t["state"], t["occurred_at"] - T0) for t in shards.transitions]
    assert got == [("open", 21 * S), ("resolve", 76 * S)]
