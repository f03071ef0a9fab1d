"""`herald bench --ab`: the arms alternate so that drift weighs on both, and the cost is read
from the medians, and pair by pair."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from herald.bench.ab import Run, ab_result, arm_order, audience_load, render_ab
from herald.bench.run import OUTAGE_FAILURES, probe_messages
from herald.config import Settings


def test_arms_alternate_in_reversed_pairs() -> None:
    assert arm_order(1) == ["off", "on"]
    assert arm_order(3) == ["off", "on", "on", "off", "off", "on"]


def test_the_cost_compares_medians_of_each_arm() -> None:
    runs = {"off": [Run(100.0, 20.0, 300), Run(80.0, 30.0, 310), Run(90.0, 25.0, 305)],
            "on": [Run(81.0, 27.5, 320), Run(60.0, 40.0, 330), Run(99.0, 20.0, 325)]}  # fmt: skip
    result = ab_result("escalations", runs)
    assert result["ab_off_events_per_s"] == [100, 80, 90]
    assert result["ab_throughput_cost"] == 0.1  # 1 - 81 / 90
    assert result["ab_cpu_cost"] == 0.1  # 27.5 / 25 - 1
    # Pair by pair (neighbours in time): 1 - 81/100, 1 - 60/80, 1 - 99/90.
    assert result["ab_pair_throughput_costs"] == [0.19, 0.25, -0.1]
    assert result["ab_pair_throughput_cost"] == 0.19
    assert "per pair: +19.0%, +25.0%, -10.0%; their median +19.0%" in render_ab(result)


def test_an_audience_load_is_one_broadcast_to_that_many_users() -> None:
    load = audience_load(2500, 1000)
    assert {m.event["broadcast_id"] for m in load if m.event} == {"audience"}
    assert len({m.event["user_id"] for m in load if m.event}) == 1000
    assert len({(m.event["user_id"], m.event["channel"]) for m in load if m.event}) == 2500


def test_a_freshness_probe_reaches_every_input_partition() -> None:
    """Event time waits for the slowest input partition: a probe on fewer partitions would
    measure the gaps between the probes, not Herald."""
    partitions = list(range(Settings().partitions))
    keys = [key for key, _ in probe_messages("b1", "t1", OUTAGE_FAILURES, "failed")]
    assert {DefaultPartitioner()(key, partitions, partitions) for key in keys} == set(partitions)
