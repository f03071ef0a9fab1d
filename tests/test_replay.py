"""Live equals replay (SPEC §4): the same events sent live, keyed by broadcast on 4 partitions,
and replayed keyed at random on 8 partitions in another order (within grace), give identical
tables, histograms, percentiles and lifecycle rows, and both equal the oracle."""

from __future__ import annotations

import random
import zlib
from pathlib import Path
from typing import Any

import pytest

from herald.kafka import local_broker
from herald.load.simulate import Scenario, SimEvent, generate
from herald.load.totals import epoch_ms, expected_totals, instant
from herald.model.schema import COUNTERS
from tests.e2e import assert_exact, produce
from tests.harness import Herald

pytestmark = pytest.mark.slow
SHUFFLE_MS = 240_000  # events move up to 4 minutes of event time: inside the 10-minute grace

BROADCAST_WINDOWS = f"""
SELECT tenant_id, broadcast_id, window_start, {", ".join(COUNTERS)},
       delivery_latency_hist, time_to_read_hist
FROM broadcast_stats_1m FINAL ORDER BY tenant_id, broadcast_id, window_start"""
REGION_WINDOWS = f"""
SELECT tenant_id, region, channel, window_start,
       {", ".join(f"sum({c}) AS {c}" for c in COUNTERS)},
       sumMap(delivery_latency_hist) AS latency, sumMap(time_to_read_hist) AS time_to_read
FROM region_stats_1m FINAL GROUP BY tenant_id, region, channel, window_start
ORDER BY tenant_id, region, channel, window_start"""
PERCENTILES = """
SELECT tenant_id, broadcast_id, delivery_latency_p50_ms, delivery_latency_p95_ms,
       delivery_latency_p99_ms, time_to_read_p50_s, time_to_read_p95_s
FROM broadcast_summary ORDER BY tenant_id, broadcast_id"""
LIFECYCLES = "SELECT * EXCEPT (version, updated_at) FROM broadcasts FINAL ORDER BY ALL"


def replay_order(messages: list[SimEvent], rng: random.Random) -> list[SimEvent]:
    """Another order: each valid event moves by up to SHUFFLE_MS of event time."""

    def at(msg: SimEvent) -> float:
        if msg.event is None:
            return rng.uniform(0, len(messages))
        return epoch_ms(instant(msg.event["occurred_at"])) + rng.uniform(0, SHUFFLE_MS)

    return sorted(messages, key=at)


def by_key(msg: SimEvent) -> int:
    return zlib.crc32(msg.key or msg.value) % 4


def tables(herald: Herald) -> dict[str, list[dict[str, Any]]]:
    sql = {"broadcast": BROADCAST_WINDOWS, "region": REGION_WINDOWS,
           "percentiles": PERCENTILES, "lifecycles": LIFECYCLES}  # fmt: skip
    return {name: herald.query(q) for name, q in sql.items()}


def run(tmp: Path, messages: list[SimEvent], partitions: int, partition: Any
        ) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    broker = local_broker.start(tmp / "broker", port=local_broker.free_port())
    try:
        produce(broker.bootstrap, messages, partition, partitions)
        herald = Herald(tmp / "h", broker.bootstrap, partitions=partitions).start()
        try:
            assert_exact(herald, expected_totals(messages))
            return tables(herald)
        finally:
            herald.stop()
    finally:
        local_broker.stop(tmp / "broker")


def test_live_keyed_by_broadcast_equals_a_reordered_random_replay(tmp_path: Path) -> None:
    live = generate(Scenario(seed=21, broadcasts=12, keying="broadcast", invalid=8))
    rng = random.Random(4)
    replay = replay_order(live, rng)
    assert replay != live
    live_tables = run(tmp_path / "live", live, 4, by_key)
    replay_tables = run(tmp_path / "replay", replay, 8, lambda m: rng.randrange(8))
    assert all(live_tables.values())
    for name, rows in live_tables.items():
        assert replay_tables[name] == rows, f"{name} differs between live and replay"
