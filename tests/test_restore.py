"""State that must come from the changelog alone (SPEC §1): a shard whose local RocksDB is gone
and whose input (`herald.events`) can no longer supply it.

Kafka's DeleteRecords removes what the shards already consumed from `herald.events`, so a
shard that did not restore its state from `herald.changelog` would start from an empty store
at the new log start, and lose every count before it.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from herald.kafka import local_broker
from herald.load.simulate import Scenario, generate
from herald.load.totals import expected_totals
from herald.model import topics
from tests.e2e import assert_exact, delete_consumed, produce, raw_count
from tests.harness import Herald, wait_for

pytestmark = pytest.mark.slow


def test_lost_state_dir_and_input_are_restored_from_the_changelog(
    broker: str, tmp_path: Path
) -> None:
    messages = generate(Scenario(seed=3, invalid=5))
    half = len(messages) // 2
    totals, first_half = expected_totals(messages), expected_totals(messages[:half])
    produce(broker, messages[:half])
    data_dir = tmp_path / "h"
    port = local_broker.free_port()
    herald = Herald(data_dir, broker, web_port=port).start()
    try:
        wait_for(lambda: raw_count(herald) == first_half.valid, 120, "the first half stored")
        assert_exact(herald, first_half)
    finally:
        herald.kill()
    shutil.rmtree(data_dir / "state")
    assert delete_consumed(broker, topics.EVENTS) > 0  # nothing left to re-read
    produce(broker, messages[half:])
    herald = Herald(data_dir, broker, web_port=port).start()
    try:
        assert_exact(herald, totals)
    finally:
        herald.stop()


def test_shards_move_to_a_fresh_worker_while_the_stream_runs(broker: str, tmp_path: Path) -> None:
    """Worker A owns every shard; what it consumed of `herald.events` is deleted; worker B, on
    an empty data dir, joins while A works through more input, takes some shards, and must
    count the rest on top of state it has only from the changelog."""
    # Halves that interleave over the whole span: the second touches every window of the
    # first, so counts B did not restore would show (the windows stay within grace).
    messages = generate(Scenario(seed=8, broadcasts=30, users_per_broadcast=300, invalid=5))
    first, second = messages[0::2], messages[1::2]
    totals, first_half = expected_totals(first + second), expected_totals(first)
    produce(broker, first)
    sink = Herald(tmp_path / "sink", broker, role="sink").start()
    worker_a = Herald(tmp_path / "a", broker, role="worker").start()
    worker_b = Herald(tmp_path / "b", broker, role="worker")
    try:
        wait_for(lambda: raw_count(sink) == first_half.valid, 120, "the first half stored")
        assert_exact(sink, first_half)
        assert delete_consumed(broker, topics.EVENTS, groups=["shards", "sink"]) > 0
        during = threading.Thread(target=produce, args=(broker, second[: len(second) // 2]))
        during.start()
        worker_b.start()
        moved = wait_for(lambda: sorted((tmp_path / "b" / "state").glob("shard-*")), 60,
                         "shards assigned to worker B")  # fmt: skip
        assert 0 < len(moved) < 4
        during.join()
        produce(broker, second[len(second) // 2 :])
        assert_exact(sink, totals)
    finally:
        for process in (worker_b, worker_a, sink):
            process.stop()
