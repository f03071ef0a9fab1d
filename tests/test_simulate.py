"""The simulator and the producer: deterministic, valid and adversarial as configured, with
exact expected totals; NDJSON replay and live traffic through a real Kafka broker."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from herald.config import Settings
from herald.errors import HeraldError
from herald.kafka.admin import TopicSpec, ensure_topics, topic_partitions
from herald.load.produce import SimEvent, produce_events, produce_files
from herald.load.simulate import INVALID_KINDS, Keying, Scenario, generate, rfc3339, run_live
from herald.load.totals import expected_totals, window_start
from herald.model import topics
from herald.model.contracts import TYPES
from herald.streams.validate import InvalidEvent, check

Record: TypeAlias = ConsumerRecord[bytes, bytes]

SMALL = Scenario(
    broadcasts=6,
    users_per_broadcast=40,
    invalid=len(INVALID_KINDS),
    duplicate_ratio=0.05,
    out_of_order_ratio=0.1,
)


@pytest.fixture(scope="module")
def small() -> list[SimEvent]:
    return generate(SMALL)


@pytest.fixture(scope="module")
def default() -> list[SimEvent]:
    return generate(Scenario())


def digest(events: list[SimEvent]) -> str:
    h = hashlib.sha256()
    for e in events:
        h.update(f"{e.topic}|{e.key!r}|".encode() + e.value)
    return h.hexdigest()


def epoch_ms(occurred_at: str) -> int:
    return int(datetime.fromisoformat(occurred_at).timestamp() * 1000)


# --- determinism and validity ----------------------------------------------------------------


def test_same_seed_same_bytes_even_in_another_process(small: list[SimEvent]) -> None:
    assert generate(SMALL) == small
    assert digest(generate(Scenario(seed=8, broadcasts=6, users_per_broadcast=40))) != digest(small)
    code = (
        "from herald.load.simulate import *; from tests.test_simulate import SMALL, digest; "
        "print(digest(generate(SMALL)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # str hashes must not leak into the output
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, check=True
    )
    assert out.stdout.strip() == digest(small)


def test_every_valid_event_passes_the_validator(default: list[SimEvent]) -> None:
    for e in default:
        if e.event is not None:
            checked = check(e.topic, e.value)
            assert (checked["tenant_id"], checked["event_id"]) == (
                e.event["tenant_id"],
                e.event["event_id"],
            )


def test_every_kind_of_invalid_message_is_rejected(small: list[SimEvent]) -> None:
    invalid = [e for e in small if e.event is None]
    assert len(invalid) == len(INVALID_KINDS)
    for e in invalid:
        with pytest.raises(InvalidEvent):
            check(e.topic, e.value)
    assert any(not e.value for e in invalid)  # empty
    assert any(b"\xff" in e.value for e in invalid)  # not UTF-8


def test_event_times_inside_the_scenario_and_ids_unique_per_tenant(
    default: list[SimEvent],
) -> None:
    sc = Scenario()
    by_id: dict[tuple[str, str], bytes] = {}
    for e in default:
        if e.event is None:
            continue
        assert sc.start_ms <= epoch_ms(e.event["occurred_at"]) <= sc.end_ms
        identity = (e.event["tenant_id"], e.event["event_id"])
        assert by_id.setdefault(identity, e.value) == e.value  # a repeat is a true duplicate


def test_traffic_is_realistic(default: list[SimEvent]) -> None:
    events = [e.event for e in default if e.event is not None]
    types = {(e.topic, e.event["type"]) for e in default if e.event is not None}
    for topic in (topics.DELIVERIES, topics.ACKS):
        assert {(topic, t) for t in TYPES[topic]} <= types
    assert {(topics.BROADCASTS, t) for t in ("created", "scheduled", "sent", "updated")} <= types
    assert {e["tenant_id"] for e in events} == {"acme", "globex", "initech"}
    assert {e.get("channel") for e in events} >= {"sse", "in_app", "push", "email", "sms"}
    assert {e["region"] for e in events if "region" in e} == set(Scenario().regions)
    urgent = [e for e in events if e.get("priority") in ("high", "critical")]
    assert urgent and all(e["ack_deadline_s"] > 0 for e in urgent)
    failed = [e for e in events if e["type"] == "failed"]
    assert {e["retryable"] for e in failed} == {True, False}
    assert max(e["attempt"] for e in events if "attempt" in e) >= 3
    delivered = [e["latency_ms"] for e in events if e["type"] == "delivered"]
    assert min(delivered) < 100 < 1000 < max(delivered)
    responses = {e["action_id"] for e in events if e["type"] == "responded"}
    assert responses == {"yes", "no", "maybe"}
    assert any(not e["occurred_at"].endswith("Z") for e in events)  # offsets other than Z


# --- adversarial parts -----------------------------------------------------------------------


def test_duplicates_and_late_messages_stay_within_grace(small: list[SimEvent]) -> None:
    first_key: dict[tuple[str, str], bytes | None] = {}
    duplicates = rekeyed = late = 0
    high_water = 0
    for e in small:
        if e.event is None:
            continue
        identity = (e.event["tenant_id"], e.event["event_id"])
        if identity in first_key:
            duplicates += 1
            rekeyed += e.key != first_key[identity]
        first_key.setdefault(identity, e.key)
        occurred = epoch_ms(e.event["occurred_at"])
        late += occurred < high_water
        # The watermark never runs ahead of an event by more than max_delay_s.
        assert high_water - occurred <= SMALL.max_delay_s * 1000
        high_water = max(high_water, occurred)
    assert duplicates > 10 and rekeyed > 0 and late > 50


def test_keying_changes_keys_only() -> None:
    base = Scenario(broadcasts=3, users_per_broadcast=10, invalid=5)
    keyings: tuple[Keying, ...] = ("broadcast", "user", "random", "none")
    runs = {k: generate(replace(base, keying=k)) for k in keyings}
    values = [[(e.topic, e.value) for e in run] for run in runs.values()]
    assert all(v == values[0] for v in values)
    assert all(e.key is None for e in runs["none"])

    def share_keyed_by(run: list[SimEvent], field: str) -> float:
        keyed = [e for e in run if e.event and field in e.event]
        return sum(e.key == str(e.event[field]).encode() for e in keyed if e.event) / len(keyed)

    # Duplicates are re-sent under another key half the time, so not quite all.
    assert share_keyed_by(runs["user"], "user_id") > 0.9
    assert share_keyed_by(runs["broadcast"], "broadcast_id") > 0.9
    assert len({e.key for e in runs["random"]}) > 0.9 * len(runs["random"])


def test_unsafe_scenarios_are_refused() -> None:
    with pytest.raises(HeraldError, match="max_delay_s"):
        Scenario(max_delay_s=600)
    with pytest.raises(HeraldError, match="failure_ratio"):
        Scenario(failure_ratio=1.5)


# --- expected totals -------------------------------------------------------------------------

T0 = 1_795_428_000_000  # 2026-11-23T10:00:00Z


def event(topic: str, kind: str, ms: int, event_id: str, **fields: Any) -> SimEvent:
    body = {
        "event_id": event_id,
        "tenant_id": "acme",
        "occurred_at": rfc3339(ms),
        "schema_version": 1,
        "type": kind,
        "broadcast_id": "b1",
        **fields,
    }
    return SimEvent(topic, b"b1", orjson.dumps(body), body)


def test_totals_of_a_hand_made_stream() -> None:
    de_sms = {"user_id": "u1", "channel": "sms", "region": "DE"}
    fr_push = {"user_id": "u2", "channel": "push", "region": "FR"}
    delivered = event(topics.DELIVERIES, "delivered", T0 + 61_000, "e5", **fr_push, attempt=1)
    stream = [
        event(topics.BROADCASTS, "sent", T0, "e1", priority="high", channels=["sms", "push"]),
        # sms allows 3 attempts: a retryable failure at 1 is retried, at 3 dead-lettered.
        event(topics.DELIVERIES, "failed", T0 + 1_000, "e2", **de_sms, attempt=1, retryable=True),
        event(topics.DELIVERIES, "failed", T0 + 2_000, "e3", **de_sms, attempt=3),
        event(topics.DELIVERIES, "failed", T0 + 3_000, "e4", **fr_push, retryable=False),
        delivered,
        delivered,  # a duplicate: counted once
        SimEvent(topics.DELIVERIES, b"b1", replace_type(delivered.value), None),
        event(topics.ACKS, "read", T0 + 59_999, "e6", **fr_push),
    ]
    totals = expected_totals(stream)
    assert (totals.valid, totals.duplicates, totals.invalid) == (6, 1, 1)
    assert totals.messages == {topics.BROADCASTS: 1, topics.DELIVERIES: 6, topics.ACKS: 1}
    assert totals.by_broadcast == {
        ("acme", "b1"): Counter(failed=3, retries_scheduled=1, dead_lettered=2, delivered=1, read=1)
    }
    assert totals.by_region == {
        ("acme", "DE", "sms"): Counter(failed=2, retries_scheduled=1, dead_lettered=1),
        ("acme", "FR", "push"): Counter(failed=1, dead_lettered=1, delivered=1, read=1),
    }
    minute0, minute1 = window_start(rfc3339(T0)), window_start(rfc3339(T0 + 60_000))
    assert minute0 == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert totals.by_broadcast_minute == {
        ("acme", "b1", minute0): Counter(failed=3, retries_scheduled=1, dead_lettered=2, read=1),
        ("acme", "b1", minute1): Counter(delivered=1),
    }
    assert totals.by_region_minute[("acme", "FR", "push", minute1)] == Counter(delivered=1)


def replace_type(value: bytes) -> bytes:
    return value.replace(b'"delivered"', b'"teleported"')


def test_totals_agree_with_an_independent_recount(small: list[SimEvent]) -> None:
    """Recount with the validator's view of each message: distinct ids, per broadcast/type."""
    seen: set[tuple[str, str]] = set()
    recount: Counter[tuple[str, str, str]] = Counter()
    invalid = 0
    for e in small:
        try:
            checked = check(e.topic, e.value)
        except InvalidEvent:
            invalid += 1
            continue
        identity = (checked["tenant_id"], checked["event_id"])
        if identity not in seen and e.topic != topics.BROADCASTS:
            recount[(checked["tenant_id"], checked["broadcast_id"], checked["type"])] += 1
        seen.add(identity)
    totals = expected_totals(small)
    assert (totals.valid, totals.invalid) == (len(seen), invalid)
    mine = Counter(
        {
            (tenant, broadcast, name): n
            for (tenant, broadcast), counters in totals.by_broadcast.items()
            for name, n in counters.items()
            if name not in ("retries_scheduled", "dead_lettered")
        }
    )
    assert mine == recount
    grand = totals.grand_total()
    for breakdown in (totals.by_region, totals.by_broadcast_minute, totals.by_region_minute):
        assert sum(breakdown.values(), Counter()) == grand
    assert grand["retries_scheduled"] > 0 and grand["dead_lettered"] > 0


# --- through the broker ----------------------------------------------------------------------


async def consume(bootstrap: str, topic: str, n: int, timeout_s: float = 30) -> list[Record]:
    """The first `n` messages of a topic (all partitions), or what came before the deadline."""
    start = {tp: 0 for tp in await end_offsets(bootstrap, topic)}
    return (await read_between(bootstrap, start, None, n, timeout_s))[:n]


async def read_between(
    bootstrap: str,
    start: dict[TopicPartition, int],
    end: dict[TopicPartition, int] | None,
    n: int | None = None,
    timeout_s: float = 30,
) -> list[Record]:
    """Messages from `start` up to `end` offsets (or `n` messages), read without a group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list[Record] = []
    wanted = (n or 0) if end is None else sum(end.values()) - sum(start.values())
    deadline = time.monotonic() + timeout_s
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        while len(records) < wanted and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def test_produce_files_round_trip(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap)
    topic = f"replay-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, {topic: TopicSpec(3)})
    obj = {"event_id": "e1", "tenant_id": "acme", "note": "héllo ✓"}
    lines = [
        {"topic": topic, "key": "b1", "value": obj},
        {"topic": topic, "key": "b1", "value": "not json {"},
        {"topic": topic, "value": "raw ✓ text"},
        {"topic": topic, "key": None, "value": {}},
    ]
    first, second = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    first.write_bytes(b"\n".join(orjson.dumps(line) for line in lines[:2]) + b"\n\n")
    second.write_bytes(b"\n".join(orjson.dumps(line) for line in lines[2:]))
    assert await produce_files(settings, [first, second]) == 4
    got = await consume(kafka_bootstrap, topic, 4)
    assert Counter((r.key, r.value) for r in got) == Counter(
        [
            (b"b1", orjson.dumps(obj)),
            (b"b1", b"not json {"),
            (None, "raw ✓ text".encode()),
            (None, b"{}"),
        ]
    )
    b1 = [r.value for r in got if r.key == b"b1"]
    assert b1 == [orjson.dumps(obj), b"not json {"]  # same key, same partition, file order


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{not json", "not a JSON line"),
        (b'{"topic": "t"}', '"value" must be'),
        (b'{"topic": "t", "value": 3}', '"value" must be'),
        (b'{"value": {}}', '"topic" must be'),
        (b'{"topic": "t", "key": 5, "value": {}}', '"key" must be'),
        (b'{"topic": "t", "value": {}, "partition": 1}', "unknown field"),
        (b"[1]", "expected an object"),
    ],
)
async def test_malformed_replay_line_names_file_and_line(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "bad.ndjson"
    path.write_bytes(b'{"topic": "t", "value": {}}\n' + content + b"\n")
    settings = Settings(kafka_bootstrap="127.0.0.1:1")  # never reached: lines are checked first
    with pytest.raises(HeraldError, match=rf"bad\.ndjson:2: .*{problem}"):
        await produce_files(settings, [path])
    with pytest.raises(HeraldError, match="cannot read"):
        await produce_files(settings, [tmp_path / "missing.ndjson"])


async def test_generated_messages_arrive_byte_for_byte(kafka_bootstrap: str) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap)
    topic = f"sim-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, {topic: TopicSpec(4)})
    events = [SimEvent(topic, e.key, e.value, e.event) for e in generate(SMALL)]
    assert await produce_events(settings, events) == len(events)
    got = await consume(kafka_bootstrap, topic, len(events))
    assert Counter((r.key, r.value) for r in got) == Counter((e.key, e.value) for e in events)


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    numbers = await topic_partitions(Settings(kafka_bootstrap=bootstrap), topic)
    partitions = [TopicPartition(topic, p) for p in numbers]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def test_live_traffic_at_a_rate(kafka_bootstrap: str) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap)
    await ensure_topics(settings, {t: TopicSpec(2) for t in topics.INPUT_TOPICS})
    before = {t: await end_offsets(kafka_bootstrap, t) for t in topics.INPUT_TOPICS}
    sc = Scenario(broadcasts=4, users_per_broadcast=20, invalid=5, max_delay_s=30)
    started = time.time()
    counts = await run_live(settings, rate=300, duration_s=2.0, scenario=sc)
    finished = time.time()
    assert 450 <= sum(counts.values()) <= 660
    valid = 0
    for t in topics.INPUT_TOPICS:
        after = await end_offsets(kafka_bootstrap, t)
        assert sum(after.values()) - sum(before[t].values()) == counts.get(t, 0)
        for record in await read_between(kafka_bootstrap, before[t], after):
            try:
                occurred_at = check(t, record.value)["occurred_at"]
            except InvalidEvent:
                continue
            valid += 1
            # Wall-clock event times; a late message keeps its lateness (≤ max_delay_s).
            assert started - sc.max_delay_s - 1 <= epoch_ms(occurred_at) / 1000 <= finished
    assert valid > 400


async def test_live_rejects_a_bad_rate() -> None:
    with pytest.raises(HeraldError, match="positive"):
        await run_live(Settings(), rate=0, duration_s=1)


async def test_producing_to_a_missing_topic_fails_at_once(kafka_bootstrap: str) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap)
    missing = SimEvent(f"missing-{uuid.uuid4().hex[:8]}", None, b"{}", None)
    started = time.monotonic()
    with pytest.raises(HeraldError, match="does not exist"):
        await produce_events(settings, [missing])
    assert time.monotonic() - started < 5
