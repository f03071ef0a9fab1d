"""`herald bench --ab`: the arms alternate so that drift weighs on both, and the cost is read
from the medians."""

from __future__ import annotations

from herald.bench.ab import ab_result, arm_order


def test_arms_alternate_in_reversed_pairs() -> None:
    assert arm_order(1) == ["off", "on"]
    assert arm_order(3) == ["off", "on", "on", "off", "off", "on"]


def test_the_cost_compares_medians_of_each_arm() -> None:
    runs = {"off": [(100.0, 20.0), (80.0, 30.0), (90.0, 25.0)],
            "on": [(81.0, 27.5), (60.0, 40.0), (99.0, 20.0)]}  # fmt: skip
    result = ab_result("escalations", runs)
    assert result["ab_off_events_per_s"] == [100, 80, 90]
    assert result["ab_throughput_cost"] == 0.1  # 1 - 81 / 90
    assert result["ab_cpu_cost"] == 0.1  # 27.5 / 25 - 1
