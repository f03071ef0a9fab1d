"""Retries and dead letters end to end (SPEC §3): a generated data set with known failures,
a real broker and `herald run`. Every retry row has the next attempt and a due time within the
channel's policy, retries and dead letters equal the expected ones in ClickHouse and on their
topics (each once), and cancellations hold in event time."""

from __future__ import annotations

import signal
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from herald.kafka import local_broker
from herald.load.simulate import Scenario, SimEvent, generate
from herald.load.totals import Followups, expected_followups, expected_totals
from herald.model import topics
from herald.processes.child import HeraldProcess
from tests.e2e import assert_exact, produce, raw_count, read_topic
from tests.harness import Herald, wait_for

pytestmark = pytest.mark.slow
ROWS = """
SELECT kind, retry_id, tenant_id, broadcast_id, user_id, channel, attempt, outcome, history,
       toUnixTimestamp64Milli(due_at) AS due_ms, toUnixTimestamp64Milli(occurred_at) AS failed_ms
FROM delivery_retries FINAL"""


def settled(herald: Herald, want: Followups) -> list[dict[str, Any]] | None:
    """The rows once every expected retry is decided and every dead letter is in."""
    rows = herald.query(ROWS)
    retries = [r for r in rows if r["kind"] == "retry"]
    letters = [r for r in rows if r["kind"] == "deadletter"]
    done = all(r["outcome"] in ("published", "cancelled") for r in retries)
    whole = len(retries) == len(want.retries) and len(letters) == len(want.dead_letters)
    return rows if done and whole else None


def known_failures(seed: int, broadcasts: int = 16) -> list[SimEvent]:
    """In event-time order per recipient (keyed by broadcast, no out-of-order messages):
    cancellations are decided in event time, so the oracle knows each outcome."""
    return generate(Scenario(seed=seed, broadcasts=broadcasts, out_of_order_ratio=0,
                             duplicate_ratio=0, failure_ratio=0.15))  # fmt: skip


def by_broadcast_key(msg: SimEvent) -> int:
    return zlib.crc32(msg.key or msg.value) % 4


def test_retries_and_dead_letters_equal_the_known_answers(broker: str, tmp_path: Path) -> None:
    messages = known_failures(31)
    want = expected_followups(messages)
    assert len(want.retries) > 50 and len(want.dead_letters) > 10
    produce(broker, messages, by_broadcast_key)
    herald = Herald(tmp_path / "h", broker, idle_partition_s=2).start()
    try:
        assert_exact(herald, expected_totals(messages))
        rows = wait_for(lambda: settled(herald, want), 90, "every retry decided")
    finally:
        herald.stop()
    check_rows_and_topics(broker, rows, want)


def test_sigkill_twice_each_retry_and_dead_letter_reaches_a_consumer_once(
    broker: str, tmp_path: Path
) -> None:
    """Transactions bind each output to the state change that records it as sent. Twice the
    worker dies right after sending retries and dead letters, before recording them as sent
    (a failpoint), and once more mid-stream; a read_committed consumer still sees every id
    exactly once (at least once, they would come again after each restart)."""
    messages = known_failures(37, broadcasts=40)
    want, totals = expected_followups(messages), expected_totals(messages)
    produce(broker, messages, by_broadcast_key)
    data_dir, port = tmp_path / "h", local_broker.free_port()

    def run(**env: Any) -> HeraldProcess:
        return Herald(data_dir, broker, batch_max=100, web_port=port, idle_partition_s=2,
                      **env).start()  # fmt: skip

    for failpoint in ("outputs-sent:2", "outputs-sent:3"):
        herald = run(failpoint=failpoint)
        assert herald.proc is not None
        assert herald.proc.wait(120) == -signal.SIGKILL, "the failpoint was never reached"
    herald = run()
    wait_for(lambda: raw_count(herald) >= totals.valid // 2, 120, "half processed", every_s=0.1)
    assert raw_count(herald) < totals.valid
    herald.kill()
    herald = run()
    try:
        assert_exact(herald, totals)
        rows = wait_for(lambda: settled(herald, want), 90, "every retry decided")
    finally:
        herald.stop()
    check_rows_and_topics(broker, rows, want)


def check_rows_and_topics(broker: str, rows: list[dict[str, Any]], want: Followups) -> None:
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
