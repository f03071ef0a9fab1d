"""`herald bench --ab FEATURE`: what one feature costs, as Herald with it against Herald
without it, on the same load in one session.

Each arm gets a fresh broker, the same messages and a fresh `herald run`; arms alternate
off, on, on, off (…) so that a drift of this shared machine over the session weighs on both.
One run of an arm varies by ±15 % here: the medians of several pairs are what to read.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any

from herald.bench.run import Progress, bench_load, measure_herald, produce
from herald.config import Settings
from herald.kafka import local_broker
from herald.load.produce import SimEvent
from herald.processes.child import HeraldProcess

# The settings of the "off" arm, as `herald run` reads them from its environment.
FEATURES: dict[str, dict[str, str]] = {
    "escalations": {"escalations": '{"enabled": false}'},
    "metrics": {"metrics_enabled": "false"},
}
ARMS = ("off", "on")


def arm_order(pairs: int) -> list[str]:
    """off, on, on, off, off, on, …: each pair reversed from the one before."""
    order: list[str] = []
    for pair in range(pairs):
        order.extend(ARMS if pair % 2 == 0 else reversed(ARMS))
    return order


def run_ab(feature: str, events: int, pairs: int, progress: Progress) -> dict[str, Any]:
    """Events/s and CPU-s per million of each run of each arm, and the feature's cost."""
    progress(f"generating {events} delivery events")
    load = bench_load(events)
    with tempfile.TemporaryDirectory(prefix="herald-ab-") as tmp:
        return _arms(feature, load, Path(tmp), pairs, progress)


def _arms(
    feature: str, load: list[SimEvent], work: Path, pairs: int, progress: Progress
) -> dict[str, Any]:
    runs: dict[str, list[tuple[float, float]]] = {arm: [] for arm in ARMS}
    for i, arm in enumerate(arm_order(pairs)):
        env = FEATURES[feature] if arm == "off" else {}
        progress(f"A/B {feature} {arm} ({i + 1}/{2 * pairs})")
        runs[arm].append(_one_run(load, work / f"ab{i}", env))
    return ab_result(feature, runs)


def _one_run(load: list[SimEvent], work: Path, env: dict[str, str]) -> tuple[float, float]:
    broker = local_broker.start(work / "broker", port=local_broker.free_port())
    try:
        settings = Settings(kafka_bootstrap=broker.bootstrap, data_dir=work / "herald")
        asyncio.run(produce(settings, load, lambda _: None))
        herald = HeraldProcess(settings.data_path, broker.bootstrap, **env).start()
        try:
            return measure_herald(herald, len(load))
        finally:
            herald.stop()
    finally:
        local_broker.stop(work / "broker")


def ab_result(feature: str, runs: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    """Per arm: every run and the medians; the cost is 1 - on / off of the median rates."""
    result: dict[str, Any] = {"ab_feature": feature}
    for arm, samples in runs.items():
        result[f"ab_{arm}_events_per_s"] = [round(rate) for rate, _ in samples]
        result[f"ab_{arm}_cpu_s_per_million"] = [round(cpu, 1) for _, cpu in samples]
    rate = {arm: statistics.median(r for r, _ in samples) for arm, samples in runs.items()}
    cpu = {arm: statistics.median(c for _, c in samples) for arm, samples in runs.items()}
    result["ab_throughput_cost"] = round(1 - rate["on"] / rate["off"], 3)
    result["ab_cpu_cost"] = round(cpu["on"] / cpu["off"] - 1, 3)
    return result


def render_ab(result: dict[str, Any]) -> str:
    """The A/B as a small table: each arm's runs, then the cost of the feature."""
    lines = [f"A/B {result['ab_feature']}: {'events/s (each run)':>36} {'CPU-s/1M':>18}"]
    for arm in ARMS:
        rates = ", ".join(f"{r:,}" for r in result[f"ab_{arm}_events_per_s"])
        cpus = ", ".join(f"{c:.1f}" for c in result[f"ab_{arm}_cpu_s_per_million"])
        lines.append(f"  {arm:4} {rates:>45} {cpus:>18}")
    lines.append(
        f"  cost of {result['ab_feature']}: throughput {result['ab_throughput_cost']:+.1%},"
        f" CPU per event {result['ab_cpu_cost']:+.1%} (medians)"
    )
    return "\n".join(lines)
