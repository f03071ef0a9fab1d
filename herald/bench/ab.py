"""`herald bench --ab FEATURE`: what one feature costs, as Herald with it against Herald
without it, on the same load in one session.

Every run reads the same messages on one broker, with Herald's own topics emptied and its
state and consumer groups new, in a fresh `herald run`; arms alternate off, on, on, off (…)
so that a drift of this shared machine over the session weighs on both. A first run, not
counted, warms the broker up: a broker started for each run compiled its Java code while it
served (about 2 CPU-s of a 7 s run on two cores, more with more of Kafka's code in use),
which a long-running broker does once. One run of an arm varies by ±15 % here: the medians
of several pairs are what to read.
Each run also records the peak resident memory of `herald run` (VmHWM), so that a feature's
memory shows next to its CPU: `--audience N` makes the load one broadcast to N users, the
case where a per-user state held in memory would grow with the audience.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from herald.bench.run import Progress, bench_load, measure_herald, produce
from herald.config import Settings
from herald.kafka import admin, local_broker
from herald.load.produce import SimEvent
from herald.load.simulate import rfc3339
from herald.model import topics
from herald.processes.child import HeraldProcess

# The settings of the "off" arm, as `herald run` reads them from its environment.
FEATURES: dict[str, dict[str, str]] = {
    "escalations": {"escalations": '{"enabled": false}'},
    "metrics": {"metrics_enabled": "false"},
    "reach": {"reach": "false"},
}
ARMS = ("off", "on")
CHANNELS = ("push", "email", "in_app", "sms", "sse")


@dataclass(frozen=True)
class Run:
    events_per_s: float
    cpu_s_per_million: float
    peak_rss_mb: float


def arm_order(pairs: int) -> list[str]:
    """off, on, on, off, off, on, …: each pair reversed from the one before."""
    order: list[str] = []
    for pair in range(pairs):
        order.extend(ARMS if pair % 2 == 0 else reversed(ARMS))
    return order


def audience_load(events: int, audience: int) -> list[SimEvent]:
    """`events` deliveries of one broadcast to `audience` users (user i % audience, on the
    channels in turn), in the last ten minutes of event time."""
    start_ms = int(time.time() * 1000) - 600_000
    load = []
    for i in range(events):
        event = {"event_id": f"a{i}", "tenant_id": "bench", "broadcast_id": "audience",
                 "schema_version": 1, "type": "delivered", "user_id": f"u{i % audience}",
                 "channel": CHANNELS[i // audience % len(CHANNELS)], "region": "DE",
                 "attempt": 1, "latency_ms": 100 + i % 400,
                 "occurred_at": rfc3339(start_ms + i * 540_000 // events)}  # fmt: skip
        load.append(SimEvent(topics.DELIVERIES, b"audience", orjson.dumps(event), event))
    return load


def run_ab(
    feature: str, events: int, pairs: int, progress: Progress, audience: int | None = None
) -> dict[str, Any]:
    """Events/s, CPU-s per million and peak memory of each run of each arm, and the
    feature's cost."""
    progress(f"generating {events} delivery events")
    load = bench_load(events) if audience is None else audience_load(events, audience)
    with tempfile.TemporaryDirectory(prefix="herald-ab-") as tmp:
        return _arms(feature, load, Path(tmp), pairs, progress)


def _arms(
    feature: str, load: list[SimEvent], work: Path, pairs: int, progress: Progress
) -> dict[str, Any]:
    broker = local_broker.start(work / "broker", port=local_broker.free_port())
    try:
        settings = Settings(kafka_bootstrap=broker.bootstrap)
        asyncio.run(produce(settings, load, lambda _: None))
        progress(f"A/B {feature}: warming the broker up (a run not counted)")
        _one_run(settings, len(load), work / "warm-up", {})
        runs: dict[str, list[Run]] = {arm: [] for arm in ARMS}
        for i, arm in enumerate(arm_order(pairs)):
            env = FEATURES[feature] if arm == "off" else {}
            progress(f"A/B {feature} {arm} ({i + 1}/{2 * pairs})")
            runs[arm].append(_one_run(settings, len(load), work / f"ab{i}", env))
        return ab_result(feature, runs)
    finally:
        local_broker.stop(work / "broker")


def _one_run(settings: Settings, events: int, work: Path, env: dict[str, str]) -> Run:
    """`herald run` from nothing over the produced input: its outputs, state and groups new."""
    specs = admin.herald_topics(settings)
    outputs = {name: spec for name, spec in specs.items() if name not in topics.INPUT_TOPICS}
    asyncio.run(admin.recreate_topics(settings, outputs))
    herald = HeraldProcess(work, settings.kafka_bootstrap, group_prefix=work.name, **env)
    herald.start()
    try:
        rate, cpu = measure_herald(herald, events)
        return Run(rate, cpu, _peak_rss_mb(herald))
    finally:
        herald.stop()


def _peak_rss_mb(herald: HeraldProcess) -> float:
    """The main process's peak resident memory so far (Linux /proc, VmHWM)."""
    assert herald.proc is not None
    status = Path(f"/proc/{herald.proc.pid}/status").read_text()
    kb = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kb) / 1024


def ab_result(feature: str, runs: dict[str, list[Run]]) -> dict[str, Any]:
    """Per arm: every run and the medians; the cost is 1 - on / off of the median rates."""
    result: dict[str, Any] = {"ab_feature": feature}
    for arm, samples in runs.items():
        result[f"ab_{arm}_events_per_s"] = [round(r.events_per_s) for r in samples]
        result[f"ab_{arm}_cpu_s_per_million"] = [round(r.cpu_s_per_million, 1) for r in samples]
        result[f"ab_{arm}_peak_rss_mb"] = [round(r.peak_rss_mb) for r in samples]
    rate = {arm: statistics.median(r.events_per_s for r in runs[arm]) for arm in runs}
    cpu = {arm: statistics.median(r.cpu_s_per_million for r in runs[arm]) for arm in runs}
    result["ab_throughput_cost"] = round(1 - rate["on"] / rate["off"], 3)
    result["ab_cpu_cost"] = round(cpu["on"] / cpu["off"] - 1, 3)
    # Each pair's two runs are neighbours in time: their ratio is spared the drift of the
    # machine between pairs, which the medians of each arm are not.
    pairs = [1 - on.events_per_s / off.events_per_s
             for off, on in zip(runs["off"], runs["on"], strict=True)]  # fmt: skip
    result["ab_pair_throughput_costs"] = [round(cost, 3) for cost in pairs]
    result["ab_pair_throughput_cost"] = round(statistics.median(pairs), 3)
    return result


def render_ab(result: dict[str, Any]) -> str:
    """The A/B as a small table: each arm's runs, then the cost of the feature."""
    lines = [f"A/B {result['ab_feature']} (each run): events/s; CPU-s per 1 M; peak RSS MB"]
    for arm in ARMS:
        rates = ", ".join(f"{r:,}" for r in result[f"ab_{arm}_events_per_s"])
        cpus = ", ".join(f"{c:.1f}" for c in result[f"ab_{arm}_cpu_s_per_million"])
        rss = ", ".join(f"{m}" for m in result[f"ab_{arm}_peak_rss_mb"])
        lines.append(f"  {arm:4} {rates}; {cpus}; {rss}")
    lines.append(
        f"  cost of {result['ab_feature']}: throughput {result['ab_throughput_cost']:+.1%},"
        f" CPU per event {result['ab_cpu_cost']:+.1%} (medians)"
    )
    pairs = ", ".join(f"{c:+.1%}" for c in result["ab_pair_throughput_costs"])
    lines.append(f"  throughput cost per pair: {pairs}; their median "
                 f"{result['ab_pair_throughput_cost']:+.1%}")  # fmt: skip
    return "\n".join(lines)
