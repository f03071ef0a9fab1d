"""Fuzzing the whole pipeline: thousands of mutated messages through the real broker, mixed
into valid simulated traffic, into a real `herald run`.

Each mutation of a valid message (bytes flipped or cut, a field dropped, replaced by an odd
value or given twice, random bytes, huge values) is judged by the reference (`check`); those
it still finds valid are not sent, so every message sent is either valid traffic, whose
counts the oracle (herald.load.totals) knows, or invalid. Afterwards every table is exact,
invalid_events holds exactly the invalid ones, each with a readable reason, and the worker
never died.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson

from herald.load.simulate import Scenario, SimEvent, generate
from herald.load.totals import expected_totals
from herald.streams.validate import InvalidEvent, check, reason
from tests.e2e import assert_exact, produce
from tests.harness import Herald

SEED = 15
MUTATIONS = 6000
ODD = [None, True, 0, -1, 2**64, 1.5, "", "x" * 5000, "\u202e\u0000\ud7ff\U0001f4a9", [], {},
       {"mode": "all"}, ["sms", 1], "2026-11-23T10:00:00", "9999-99-99T99:99:99Z"]  # fmt: skip
RAW_ODD = [b'"\\ud800"', b"1e400", b"18446744073709551616", b'"\xff"', b"NaN", b"{", b'"a\\u0000"']

Mutate = Callable[[random.Random, SimEvent], bytes]


def _flip(rng: random.Random, msg: SimEvent) -> bytes:
    value = bytearray(msg.value)
    for _ in range(rng.randint(1, 4)):
        value[rng.randrange(len(value))] = rng.randrange(256)
    return bytes(value)


def _cut(rng: random.Random, msg: SimEvent) -> bytes:
    return msg.value[: rng.randrange(len(msg.value))]


def _members(msg: SimEvent) -> list[tuple[str, bytes]]:
    assert msg.event is not None
    return [(k, orjson.dumps(v)) for k, v in msg.event.items()]


def _join(members: list[tuple[str, bytes]]) -> bytes:
    return b"{" + b",".join(orjson.dumps(k) + b":" + v for k, v in members) + b"}"


def _odd_value(rng: random.Random) -> bytes:
    if rng.random() < 0.3:
        return rng.choice(RAW_ODD)
    value = rng.choice(ODD)
    return str(value).encode() if isinstance(value, int) and value >= 2**63 else _dumps(value)


def _dumps(value: object) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # a lone surrogate: write it as JSON's escape
        return b'"\\ud800"'


def _replace(rng: random.Random, msg: SimEvent) -> bytes:
    members = _members(msg)
    at = rng.randrange(len(members))
    members[at] = (members[at][0], _odd_value(rng))
    return _join(members)


def _drop(rng: random.Random, msg: SimEvent) -> bytes:
    members = _members(msg)
    del members[rng.randrange(len(members))]
    return _join(members)


def _duplicate(rng: random.Random, msg: SimEvent) -> bytes:
    members = _members(msg)
    twice = (rng.choice(members)[0], _odd_value(rng))
    return _join([twice, *members] if rng.random() < 0.5 else [*members, twice])


def _noise(rng: random.Random, msg: SimEvent) -> bytes:
    return rng.randbytes(rng.randrange(0, 400))


MUTATORS: tuple[Mutate, ...] = (_flip, _cut, _replace, _drop, _duplicate, _noise)


def fuzzed(valid: list[SimEvent], rng: random.Random) -> tuple[list[SimEvent], int]:
    """Invalid messages made from `valid`, and how many mutations the reference still took."""
    invalid, still_valid = [], 0
    events = [m for m in valid if m.event is not None]
    for _ in range(MUTATIONS):
        msg = rng.choice(events)
        value = rng.choice(MUTATORS)(rng, msg)
        try:
            check(msg.topic, value)
        except InvalidEvent:
            invalid.append(SimEvent(msg.topic, msg.key, value, None))
        else:
            still_valid += 1
    return invalid, still_valid


def mixed(valid: list[SimEvent], invalid: list[SimEvent], rng: random.Random) -> list[SimEvent]:
    """The invalid messages spread through the valid traffic, which keeps its order."""
    slots = sorted(rng.randrange(len(valid) + 1) for _ in invalid)
    out, taken = [], 0
    for index, msg in enumerate(valid):
        while taken < len(slots) and slots[taken] == index:
            out.append(invalid[taken])
            taken += 1
        out.append(msg)
    return out + invalid[taken:]


def test_mutated_messages_mixed_with_valid_traffic(broker: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    valid = generate(Scenario(tenants=3, broadcasts=12, users_per_broadcast=60))
    invalid, still_valid = fuzzed(valid, rng)
    messages = mixed(valid, invalid, rng)
    assert len(invalid) > MUTATIONS // 2
    print(f"fuzz: {MUTATIONS} mutations, {len(invalid)} invalid sent, {still_valid} still"
          f" valid (not sent), {len(valid)} valid messages")  # fmt: skip
    produce(broker, messages)
    herald = Herald(tmp_path / "herald", broker, idle_partition_s=2).start()
    try:
        assert_exact(herald, expected_totals(messages), timeout_s=240)
        per_topic = herald.query(
            "SELECT source_topic AS topic, count() AS n, groupUniqArray(error) AS errors"
            " FROM invalid_events FINAL GROUP BY source_topic"
        )
        assert {r["topic"]: r["n"] for r in per_topic} == Counter(m.topic for m in invalid)
        unreadable = [e for r in per_topic for e in r["errors"] if reason(e) == "other"]
        assert not unreadable, unreadable[:3]
        assert herald.proc is not None and herald.proc.poll() is None, herald.log_tail()
    finally:
        herald.stop()
