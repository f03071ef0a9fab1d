"""`herald bench`: Herald end to end against its baselines, on the same messages, in one run.

1. A fresh local broker; a fixed synthetic load of delivery events produced once.
2. Baselines on those messages: raw aiokafka + orjson (the client's limit), a naive Faust agent,
   Quix Streams (each in its own process, measured from first to last message).
3. Herald: `herald run` in a child process consumes the same topic into chDB; throughput is
   counted as events visible through `broadcast_summary` per second, CPU from /proc.
4. Freshness: produce at half of Herald's measured rate for a while; each batch is its own
   broadcast, and its freshness is the time from its last message sent to the row showing
   all of it in `broadcast_summary`. Once a second a region of a tenant of its own fails:
   the escalation freshness is the time until it is in `open_escalations`. Both are keyed by
   recipient, so every input partition sees events four times a second, as under live load.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from herald.bench.baselines import BaselineResult, run_baseline
from herald.config import Settings
from herald.errors import HeraldError
from herald.kafka import admin, local_broker
from herald.load.produce import SimEvent, open_producer, produce_events
from herald.load.simulate import Scenario, generate, rfc3339
from herald.model import topics
from herald.processes.child import HeraldProcess, wait_for

Progress = Callable[[str], None]
DELIVERY_COUNTERS = "queued + attempted + delivered + failed + pending + expired"


@dataclass(frozen=True)
class BenchConfig:
    events: int = 1_000_000
    faust_sample: int = 20_000
    quix_sample: int = 100_000
    freshness_s: float = 20.0
    batches_per_s: int = 4


OUTAGE_FAILURES = 60  # failed deliveries of a new region: over 50 attempts at 100 %


def bench_load(events: int) -> list[SimEvent]:
    """`events` delivery messages from the simulator (realistic sizes, keys and mix), in the
    last minutes of event time: the freshness phase then continues the same stream, as live
    traffic would (a load days old made event time jump at that phase, and every retry and
    timer of the load came due at once)."""
    users = 400
    broadcasts = max(events // (users * 4), 1)
    load: list[SimEvent] = []
    seed = 1
    start_ms = (int(time.time()) // 60 - 11) * 60_000
    while len(load) < events:
        scenario = Scenario(seed=seed, broadcasts=broadcasts, users_per_broadcast=users,
                            duplicate_ratio=0.0, start_ms=start_ms)  # fmt: skip
        load.extend(m for m in generate(scenario) if m.topic == topics.DELIVERIES)
        seed += 1
    return load[:events]


def run_bench(config: BenchConfig, progress: Progress) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="herald-bench-") as tmp:
        work = Path(tmp)
        broker = local_broker.start(work / "broker", port=local_broker.free_port())
        try:
            return _bench(config, broker.bootstrap, work, progress)
        finally:
            local_broker.stop(work / "broker")


def _bench(config: BenchConfig, bootstrap: str, work: Path, progress: Progress) -> dict[str, Any]:
    settings = Settings(kafka_bootstrap=bootstrap, data_dir=work / "herald")
    progress(f"generating {config.events} delivery events")
    load = bench_load(config.events)
    asyncio.run(produce(settings, load, progress))
    samples = {"raw": config.events, "faust_naive": config.faust_sample,
               "quix": config.quix_sample}  # fmt: skip
    baselines: dict[str, BaselineResult] = {}
    for name, n in samples.items():
        progress(f"baseline {name} on {n} messages")
        baselines[name] = run_baseline(name, bootstrap, topics.DELIVERIES, n, timeout_s=120)
    progress("Herald end to end into ClickHouse")
    herald = HeraldProcess(settings.data_path, bootstrap).start()
    try:
        events_per_s, cpu_s = measure_herald(herald, len(load))
        progress(f"Herald: {events_per_s:,.0f} events/s; freshness at half that rate")
        freshness, escalations = _measure_freshness(settings, herald, events_per_s / 2, config)
    finally:
        herald.stop()
    result = _report(baselines, events_per_s, cpu_s, len(load), freshness, events_per_s / 2)
    return {**result, **_quantiles("escalation_freshness", escalations)}


async def produce(settings: Settings, load: list[SimEvent], progress: Progress) -> None:
    await admin.ensure_topics(settings, admin.herald_topics(settings))
    await produce_events(settings, load, progress)


def _visible(herald: HeraldProcess, where: str = "") -> int:
    rows = herald.query(f"SELECT sum({DELIVERY_COUNTERS}) AS n FROM broadcast_summary {where}")
    return int(rows[0]["n"] or 0)


def measure_herald(herald: HeraldProcess, total: int) -> tuple[float, float]:
    """Events/s from the first visible rows to all of them, and CPU-s per million events."""
    start_count = wait_for(lambda: _visible(herald), 120, "the first rows", every_s=0.05)
    started, cpu_start = time.monotonic(), herald.cpu_seconds()
    _wait_for_all(herald, total, started, start_count)
    seconds = time.monotonic() - started
    done = total - start_count
    cpu_per_million = (herald.cpu_seconds() - cpu_start) / done * 1e6
    return done / seconds, cpu_per_million


def _wait_for_all(herald: HeraldProcess, total: int, started: float, start_count: int,
                  timeout_s: float = 600) -> None:  # fmt: skip
    """Poll until all `total` events are visible, every half of the time the rate so far
    says is left (0.1 to 1 s): the end is known to a tenth of a second, where polls a second
    apart could add up to a second to a 7 s run, and the count queries (they run in the
    process measured) stay few."""
    while (seen := _visible(herald)) < total:
        elapsed = time.monotonic() - started
        if elapsed > timeout_s:
            raise HeraldError(f"timed out after {timeout_s:.0f}s waiting for all {total} "
                              f"events (last: {seen})")  # fmt: skip
        rate = (seen - start_count) / elapsed if elapsed > 0 else 0.0
        left_s = (total - seen) / rate if rate > 0 else 1.0
        time.sleep(min(1.0, max(0.1, left_s / 2)))  # polling a condition with a deadline


async def _send(producer: AIOKafkaProducer, messages: list[tuple[bytes, bytes]]) -> None:
    for key, value in messages:
        await producer.send(topics.DELIVERIES, value, key=key)
    await producer.flush()


def probe_messages(broadcast_id: str, tenant: str, n: int,
               kind: str = "delivered") -> list[tuple[bytes, bytes]]:  # fmt: skip
    """(key, value) per delivery of `broadcast_id` to `n` users, keyed by recipient: live
    traffic reaches every input partition all the time. Keyed by broadcast, four broadcasts
    a second left partitions without events for seconds, and an event-time tick waits for
    the slowest partition (SPEC §4: the minimum over partitions), so that measured the gaps."""
    common = {
        "tenant_id": tenant, "occurred_at": rfc3339(int(time.time() * 1000)),
        "schema_version": 1, "type": kind, "broadcast_id": broadcast_id,
        "channel": "push", "region": "DE", "attempt": 1,
        **({"latency_ms": 120} if kind == "delivered" else {"error_code": "timeout"}),
    }  # fmt: skip
    return [
        (f"u{i}".encode(),
         orjson.dumps({**common, "event_id": f"{broadcast_id}-{i}", "user_id": f"u{i}"}))
        for i in range(n)
    ]  # fmt: skip


@dataclass
class Probes:
    """Freshness samples in flight: name -> (sent at, events); name -> seen at."""

    sent: dict[str, tuple[float, int]] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)

    def latencies(self) -> list[float]:
        return [self.seen[name] - self.sent[name][0] for name in self.sent]


def _measure_freshness(
    settings: Settings, herald: HeraldProcess, rate: float, config: BenchConfig
) -> tuple[list[float], list[float]]:
    """Produce at `rate` in batches, one broadcast each; time until each batch is visible.
    Once a second a fresh region also fails 60 deliveries: time until region_failure_rate
    is in `open_escalations`."""
    per_batch = max(int(rate / config.batches_per_s), 1)
    batches, outages = Probes(), Probes()
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(herald, batches, outages, stop), daemon=True)
    watcher.start()
    # Event time is live once the input partitions the load leaves empty (acks) went idle,
    # HERALD_IDLE_PARTITION_S after start (SPEC §4): measure the steady state, not that.
    warm_up = Probes()
    asyncio.run(_outage(settings, f"warm{uuid.uuid4().hex[:6]}", warm_up))
    outages.sent.update(warm_up.sent)
    wait_for(lambda: set(outages.seen) >= set(warm_up.sent), 120, "event time to follow the clock")
    outages.sent.clear()
    outages.seen.clear()
    asyncio.run(_steady(settings, per_batch, config, batches, outages))
    wait_for(lambda: len(batches.seen) == len(batches.sent)
             and len(outages.seen) == len(outages.sent), 60, "every freshness probe",
             every_s=0.2)  # fmt: skip
    stop.set()
    watcher.join()
    return batches.latencies(), outages.latencies()


async def _steady(
    settings: Settings, per_batch: int, config: BenchConfig, batches: Probes, outages: Probes
) -> None:
    tenant = f"fresh{uuid.uuid4().hex[:6]}"
    interval = 1 / config.batches_per_s
    async with open_producer(settings) as producer:
        started = time.monotonic()
        total = int(config.freshness_s * config.batches_per_s)
        # No outage in the last two seconds: its second would pass only once the partitions
        # went idle after the load stopped, which measures the idle rule, not freshness.
        last_outage = total - 2 * config.batches_per_s
        for i in range(total):
            await asyncio.sleep(max(started + i * interval - time.monotonic(), 0))
            broadcast = f"{tenant}-b{i}"
            await _send(producer, probe_messages(broadcast, tenant, per_batch))
            batches.sent[broadcast] = (time.monotonic(), per_batch)
            if i % config.batches_per_s == 0 and i < last_outage:
                await _fail(producer, f"{tenant}-o{i}", outages)


async def _outage(settings: Settings, tenant: str, outages: Probes) -> None:
    async with open_producer(settings) as producer:
        await _fail(producer, tenant, outages)


async def _fail(producer: AIOKafkaProducer, tenant: str, outages: Probes) -> None:
    """A region of a tenant of its own fails `OUTAGE_FAILURES` deliveries: one escalation."""
    await _send(producer, probe_messages(tenant, tenant, OUTAGE_FAILURES, "failed"))
    outages.sent[tenant] = (time.monotonic(), OUTAGE_FAILURES)


def _watch(herald: HeraldProcess, batches: Probes, outages: Probes,
           stop: threading.Event) -> None:  # fmt: skip
    while not stop.is_set():
        pending = [b for b in list(batches.sent) if b not in batches.seen]
        if pending:
            rows = herald.query(
                f"SELECT broadcast_id, delivered FROM broadcast_summary"
                f" WHERE broadcast_id IN ({_names(pending)})"
            )
            now = time.monotonic()
            for row in rows:
                if int(row["delivered"]) >= batches.sent[row["broadcast_id"]][1]:
                    batches.seen[row["broadcast_id"]] = now
        pending = [o for o in list(outages.sent) if o not in outages.seen]
        if pending:
            rows = herald.query(f"SELECT tenant_id FROM open_escalations WHERE rule ="
                                f" 'region_failure_rate' AND tenant_id IN ({_names(pending)})")
            now = time.monotonic()
            for row in rows:
                outages.seen.setdefault(row["tenant_id"], now)
        stop.wait(0.05)


def _names(names: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _report(
    baselines: dict[str, BaselineResult],
    events_per_s: float,
    cpu_s: float,
    events: int,
    freshness: list[float],
    freshness_rate: float,
) -> dict[str, Any]:
    raw = baselines["raw"]
    return {
        "events": events,
        "events_per_s": round(events_per_s),
        "cpu_s_per_million": round(cpu_s, 1),
        "baseline_events_per_s": round(raw.events_per_s),
        "baseline_cpu_s_per_million": round(raw.cpu_s / max(raw.events, 1) * 1e6, 1),
        "ratio": round(events_per_s / raw.events_per_s, 3),
        **_peer("faust_naive", baselines["faust_naive"], raw),
        **_peer("quix", baselines["quix"], raw),
        "freshness_rate_events_per_s": round(freshness_rate),
        **_quantiles("freshness", freshness),
    }


def _quantiles(name: str, samples: list[float]) -> dict[str, Any]:
    quantiles = statistics.quantiles(samples, n=100, method="inclusive")
    return {f"{name}_p50_s": round(statistics.median(samples), 3),
            f"{name}_p99_s": round(quantiles[98], 3), f"{name}_samples": len(samples)}


def _peer(name: str, result: BaselineResult, raw: BaselineResult) -> dict[str, Any]:
    if result.skipped:
        return {
            f"{name}_events_per_s": None,
            f"{name}_ratio": None,
            f"{name}_skipped": result.skipped,
        }
    return {
        f"{name}_events_per_s": round(result.events_per_s),
        f"{name}_ratio": round(result.events_per_s / raw.events_per_s, 4),
        f"{name}_cpu_s_per_million": round(result.cpu_s / max(result.events, 1) * 1e6, 1),
    }
