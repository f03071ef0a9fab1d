"""Herald's own Prometheus metrics (`/metrics` on every process's web port).

The hot path handles 50-100 k events/s in batches of up to 20 000, so nothing here is called
per event: each batch bumps plain Python numbers once (`Meter.count`, `observe`, `set`), and
`MeterCollector` turns them into Prometheus families only when Prometheus scrapes. That costs
a few dictionary updates per batch instead of a prometheus-client call (with its lock) per
event. Label values are stages, topics, partitions, tables, rules: never a tenant's user or
broadcast id.
"""

from __future__ import annotations

import bisect
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

Labels = tuple[str, ...]
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RECORDS = (1.0, 10.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0, 50000.0)


@dataclass(frozen=True)
class Spec:
    """One metric family: its name (counters without `_total`, which the exposition adds)."""

    kind: Literal["counter", "gauge", "histogram"]
    name: str
    help: str
    labels: Labels = ()
    buckets: tuple[float, ...] = SECONDS


EVENTS_IN = Spec("counter", "herald_events_in", "input messages read by ingest", ("topic",))
INVALID = Spec("counter", "herald_invalid_events", "input messages that failed checks",
               ("topic", "reason"))  # fmt: skip
DUPLICATES = Spec("counter", "herald_duplicate_events", "events dropped as already seen")
LATE = Spec("counter", "herald_late_events_dropped", "events later than the grace period")
RETRIES = Spec("counter", "herald_retries_published", "retries sent to herald.retries")
DEAD_LETTERS = Spec("counter", "herald_dead_letters", "deliveries sent to herald.deadletter")
TRANSITIONS = Spec("counter", "herald_escalation_transitions", "escalation transitions published",
                   ("rule", "state"))  # fmt: skip
# Tenants with a configured quota only (bounded by the config, like the rules' labels).
QUOTA_EVENTS = Spec("counter", "herald_tenant_quota_events",
                    "events metered against the tenant's quota (deliveries and acks counted"
                    " into its windows), as the shards send them to the escalation agent",
                    ("tenant",))  # fmt: skip
QUOTA = Spec("gauge", "herald_tenant_quota_events_per_second", "the tenant's configured quota",
             ("tenant",))  # fmt: skip
SINK_ROWS = Spec("counter", "herald_sink_rows", "rows inserted into ClickHouse", ("table",))
SINK_FAILURES = Spec("counter", "herald_sink_insert_failures", "failed ClickHouse inserts")
KAFKA_ERRORS = Spec("counter", "herald_kafka_errors", "batches failed on a Kafka error", ("stage",))
BATCH_RECORDS = Spec("histogram", "herald_batch_records", "records per consumer batch",
                     ("stage",), RECORDS)  # fmt: skip
BATCH_SECONDS = Spec("histogram", "herald_batch_seconds", "time to process one batch", ("stage",))
CHANGELOG_SECONDS = Spec("histogram", "herald_changelog_write_seconds",
                         "a batch's changelog records, produced and acknowledged", ("stage",))
PRODUCE_SECONDS = Spec("histogram", "herald_produce_seconds",
                       "a batch's outputs produced until acknowledged or committed", ("stage",))
INSERT_SECONDS = Spec("histogram", "herald_sink_insert_seconds", "one ClickHouse insert",
                      ("table",))  # fmt: skip
LAG = Spec("gauge", "herald_consumer_lag_records",
           "records behind the partition's end, as of the last batch read from it",
           ("stage", "topic", "partition"))  # fmt: skip
STATE_KEYS = Spec("gauge", "herald_state_keys", "RocksDB keys of a shard (estimate)", ("shard",))
INFO = Spec("gauge", "herald_process_info", "1 per running Herald process", ("role", "parts"))


class Histogram:
    """Bucket counts of one labelled series (non-cumulative until collected)."""

    __slots__ = ("counts", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)  # the last one is +Inf
        self.sum = 0.0


class Meter:
    """The counters of one process. Disabled (HERALD_METRICS_ENABLED=false), every call
    returns at once and `/metrics` is not served."""

    def __init__(self, role: str, parts: Iterable[str] = (), enabled: bool = True) -> None:
        self.enabled = enabled
        self.started = time.time()
        self.values: dict[Spec, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
        self.histograms: dict[Spec, dict[Labels, Histogram]] = defaultdict(dict)
        self.readers: dict[Spec, Callable[[], dict[Labels, float]]] = {}
        self.set(INFO, 1, role, ",".join(parts))

    def count(self, spec: Spec, n: float, *labels: str) -> None:
        if self.enabled:
            self.values[spec][labels] += n

    def set(self, spec: Spec, value: float, *labels: str) -> None:
        if self.enabled:
            self.values[spec][labels] = value

    def observe(self, spec: Spec, value: float, *labels: str) -> None:
        if not self.enabled:
            return
        series = self.histograms[spec].get(labels)
        if series is None:
            series = self.histograms[spec][labels] = Histogram(len(spec.buckets))
        series.counts[bisect.bisect_left(spec.buckets, value)] += 1
        series.sum += value

    def forget(self, spec: Spec, keep: Callable[[Labels], bool]) -> None:
        """Drop the series `keep` rejects (a revoked partition's lag would go stale)."""
        series = self.values.get(spec, {})
        for labels in [labels for labels in series if not keep(labels)]:
            del series[labels]

    def read_at_scrape(self, spec: Spec, reader: Callable[[], dict[Labels, float]]) -> None:
        """A gauge read only when scraped (e.g. RocksDB's key estimate)."""
        if self.enabled:
            self.readers[spec] = reader

    def total(self, spec: Spec) -> float:
        """The sum over a counter's series (for `herald status`)."""
        return sum(self.values.get(spec, {}).values())

    def series(self, spec: Spec) -> dict[Labels, float]:
        return dict(self.values.get(spec, {}))


class MeterCollector(Collector):
    """Prometheus families built from a `Meter` at scrape time."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter

    def collect(self) -> Iterator[Metric]:
        meter = self.meter
        for spec, reader in list(meter.readers.items()):
            meter.values[spec] = defaultdict(float, reader())
        for spec, series in list(meter.values.items()):
            family = _family(spec)
            for labels, value in list(series.items()):
                family.add_metric(labels, value)
            yield family
        for spec, histograms in list(meter.histograms.items()):
            hist = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
            for labels, counts in list(histograms.items()):
                hist.add_metric(labels, _cumulative(spec.buckets, counts.counts), counts.sum)
            yield hist


def _family(spec: Spec) -> CounterMetricFamily | GaugeMetricFamily:
    if spec.kind == "counter":
        return CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
    return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    out, running = [], 0
    for bound, n in zip((*map(str, bounds), "+Inf"), counts, strict=True):
        running += n
        out.append((bound, float(running)))
    return out


def registry(meter: Meter) -> CollectorRegistry:
    """The process's own registry: Herald's families plus process CPU and memory."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(MeterCollector(meter))
    ProcessCollector(registry=reg, pid=lambda: os.getpid())
    return reg


STATUS_COUNTERS = (EVENTS_IN, INVALID, DUPLICATES, LATE, SINK_ROWS, RETRIES, DEAD_LETTERS,
                   TRANSITIONS, KAFKA_ERRORS, SINK_FAILURES)  # fmt: skip


def status(meter: Meter) -> dict[str, object]:
    """Totals since start (`herald status` samples twice for rates) and lag per stage."""
    lag: dict[str, float] = defaultdict(float)
    for (stage, _topic, _partition), value in meter.series(LAG).items():
        lag[stage] += value
    return {
        "pid": os.getpid(),
        "uptime_s": round(time.time() - meter.started, 1),
        "metrics_enabled": meter.enabled,
        "counters": {spec.name: meter.total(spec) for spec in STATUS_COUNTERS},
        "lag": dict(lag),
    }
