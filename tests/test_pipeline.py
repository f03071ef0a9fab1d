"""End to end, for real: broker, `herald run` processes, chDB. Counts must be exact.

Each test gets a fresh broker and data dir; the data set is generated with known totals
(duplicates, out-of-order events, invalid messages of every kind) and the ClickHouse tables
and views must equal those totals exactly. Kills are in test_kills.py, state from the
changelog alone in test_restore.py, closing windows in test_windows_closing.py, live against
replay in test_replay.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.load.simulate import Scenario, generate
from herald.load.totals import expected_totals
from tests.e2e import (
    aggregates_end,
    assert_exact,
    partition_of,
    produce,
)
from tests.harness import Herald, wait_for

pytestmark = pytest.mark.slow


def test_exact_totals_with_uneven_partitions(broker: str, tmp_path: Path) -> None:
    messages = generate(Scenario(seed=11, invalid=40, keying="random"))
    totals = expected_totals(messages)
    assert totals.duplicates > 0 and totals.invalid == 40
    # Partition 0 is replayed first, the rest afterwards: its watermark runs far ahead, and the
    # table watermark (the minimum) must keep the slow partitions' events on time.
    first = [m for m in messages if partition_of(m) == 0]
    produce(broker, first)
    herald = Herald(tmp_path / "h", broker, idle_partition_s=60).start()
    try:
        wait_for(
            lambda: herald.query("SELECT count() AS n FROM events_raw")[0]["n"] > 0,
            60,
            "partition 0 being processed",
        )
        produce(broker, [m for m in messages if partition_of(m) != 0])
        assert_exact(herald, totals)
        late = herald.query("SELECT sum(late_dropped) AS n FROM pipeline_stats_1m FINAL")
        assert int(late[0]["n"] or 0) == 0
    finally:
        herald.stop()


def test_worker_and_sink_as_separate_processes_sink_catches_up(broker: str, tmp_path: Path) -> None:
    """Scale-out roles: the worker never talks to ClickHouse, so it processes everything while
    no sink runs (a ClickHouse outage); a sink started afterwards catches up exactly."""
    messages = generate(Scenario(seed=13, invalid=10))
    totals = expected_totals(messages)
    produce(broker, messages)
    worker = Herald(tmp_path / "w", broker, role="worker").start()
    try:
        sink = Herald(tmp_path / "s", broker, role="sink")
        wait_for(lambda: aggregates_end(broker) > 0, 60, "the worker publishing snapshot rows")
        sink.start()
        try:
            assert_exact(sink, totals)
        finally:
            sink.stop()
    finally:
        worker.stop()
