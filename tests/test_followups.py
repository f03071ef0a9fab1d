"""Retries and dead letters end to end (SPEC §3): a generated data set with known failures,
a real broker and `herald run`. Every retry row has the next attempt and a due time within the
channel's policy, retries and dead letters equal the expected ones in ClickHouse and on their
topics (each once), and cancellations hold in event time."""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from herald.load.simulate import Scenario, generate
from herald.load.totals import Followups, expected_followups, expected_totals
from herald.model import topics
from tests.e2e import assert_exact, produce
from tests.harness import Herald, wait_for

pytestmark = pytest.mark.slow
ROWS = """
SELECT kind, retry_id, tenant_id, broadcast_id, user_id, channel, attempt, outcome, history,
       toUnixTimestamp64Milli(due_at) AS due_ms, toUnixTimestamp64Milli(occurred_at) AS failed_ms
FROM delivery_retries FINAL"""


def read_topic(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Everything on `topic`, as a read_committed consumer sees it."""

    async def read() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                    enable_auto_commit=False)  # fmt: skip
        await consumer.start()
        try:
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            parts = parts or [TopicPartition(topic, p) for p in range(4)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            end = await consumer.end_offsets(parts)
            out: list[dict[str, Any]] = []
            deadline = asyncio.get_running_loop().time() + 30
            while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
                assert asyncio.get_running_loop().time() < deadline, f"{topic} not read"
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    out.extend(orjson.loads(r.value) for r in records)
            return out
        finally:
            await consumer.stop()

    return asyncio.run(read())


def settled(herald: Herald, want: Followups) -> list[dict[str, Any]] | None:
    """The rows once every expected retry is decided and every dead letter is in."""
    rows = herald.query(ROWS)
    retries = [r for r in rows if r["kind"] == "retry"]
    letters = [r for r in rows if r["kind"] == "deadletter"]
    done = all(r["outcome"] in ("published", "cancelled") for r in retries)
    whole = len(retries) == len(want.retries) and len(letters) == len(want.dead_letters)
    return rows if done and whole else None


def test_retries_and_dead_letters_equal_the_known_answers(broker: str, tmp_path: Path) -> None:
    # In event-time order per recipient (keyed by broadcast, no out-of-order messages):
    # cancellations are decided in event time, so the oracle knows each outcome.
    messages = generate(Scenario(seed=31, broadcasts=16, out_of_order_ratio=0,
                                 duplicate_ratio=0, failure_ratio=0.15))  # fmt: skip
    want = expected_followups(messages)
    assert len(want.retries) > 50 and len(want.dead_letters) > 10
    produce(broker, messages, lambda m: zlib.crc32(m.key or m.value) % 4)
    herald = Herald(tmp_path / "h", broker, idle_partition_s=2).start()
    try:
        assert_exact(herald, expected_totals(messages))
        rows = wait_for(lambda: settled(herald, want), 90, "every retry decided")
    finally:
        herald.stop()
    retries = {((r["tenant_id"], r["broadcast_id"], r["user_id"], r["channel"]), r["attempt"]): r
               for r in rows if r["kind"] == "retry"}  # fmt: skip
    assert set(retries) == set(want.retries)
    for key, row in retries.items():
        failed_ms, earliest, latest = want.retries[key]
        assert row["failed_ms"] == failed_ms and earliest <= row["due_ms"] <= latest, row
        expected = "cancelled" if want.cancelled(key, row["due_ms"]) else "published"
        assert row["outcome"] == expected, row
    outcomes = [r["outcome"] for r in retries.values()]
    assert outcomes.count("cancelled") > 0 and outcomes.count("published") > 0
    letters = {((r["tenant_id"], r["broadcast_id"], r["user_id"], r["channel"]), r["attempt"]): r
               for r in rows if r["kind"] == "deadletter"}  # fmt: skip
    assert set(letters) == want.dead_letters
    assert all(orjson.loads(r["history"])[-1]["attempt"] == r["attempt"] for r in letters.values())

    on_topic = read_topic(broker, topics.RETRIES)
    published = {r["retry_id"] for r in retries.values() if r["outcome"] == "published"}
    assert sorted(m["retry_id"] for m in on_topic) == sorted(published)  # each once
    dead = read_topic(broker, topics.DEADLETTER)
    assert sorted(m["deadletter_id"] for m in dead) == sorted(r["retry_id"]
                                                              for r in letters.values())
