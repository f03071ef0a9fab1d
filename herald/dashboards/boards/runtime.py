"""7. Herald / Runtime: Herald's own health from Prometheus (each process's /metrics).

Unlike the Pipeline health board (rows the pipeline writes into ClickHouse), this one still
shows a stalled sink or a dead worker: Prometheus scrapes the processes themselves.
"""

from herald.dashboards.model import PROMETHEUS_REF, Dashboard, Panel

RATE = "[$__rate_interval]"
JOB = '{job="herald"}'


def _stat(title: str, expr: str, unit: str = "short") -> Panel:
    return Panel(title, "stat", expr, width=6, height=4, unit=unit)


def _series(title: str, expr: str, legend: str, unit: str = "short", width: int = 12) -> Panel:
    return Panel(title, "timeseries", expr, unit=unit, legend=legend, width=width)


def _p95(title: str, histogram: str, by: str) -> Panel:
    expr = f"histogram_quantile(0.95, sum by ({by}, le) (rate({histogram}_bucket{JOB}{RATE})))"
    return _series(title, expr, f"{{{{{by}}}}}", unit="s")


def _rate_by(title: str, counter: str, by: str) -> Panel:
    return _series(title, f"sum by ({by}) (rate({counter}{JOB}{RATE}))", f"{{{{{by}}}}}", "cps")


def _named(name: str) -> str:
    """The rate of counter herald_<name>_total as one series labelled what=<name>."""
    return f'label_replace(sum(rate(herald_{name}_total{JOB}{RATE})), "what", "{name}", "", "")'


ERRORS = (
    f"sum by (stage) (rate(herald_kafka_errors_total{JOB}{RATE}))"
    f' or label_replace({_named("sink_insert_failures")}, "stage", "sink insert", "", "")'
)
OUTCOMES = ("duplicate_events", "late_events_dropped", "retries_published", "dead_letters")

RUNTIME = Dashboard(
    uid="herald-runtime",
    title="Herald / Runtime",
    description="Herald's processes as Prometheus scrapes them: throughput per stage, lag,"
    " batch and sink latency, errors, CPU and memory.",
    variables=(),
    datasource=PROMETHEUS_REF,
    panels=(
        _stat("Processes up", f"sum(up{JOB})"),
        _stat("Input events/s", f"sum(rate(herald_events_in_total{JOB}{RATE}))", "cps"),
        _stat("Consumer lag (records)", f"sum(herald_consumer_lag_records{JOB})"),
        _stat("Invalid events/s", f"sum(rate(herald_invalid_events_total{JOB}{RATE}))", "cps"),
        _rate_by("Records/s per stage", "herald_batch_records_sum", "stage"),
        _rate_by("Input events/s per topic", "herald_events_in_total", "topic"),
        _series("Consumer lag per stage", f"sum by (stage) (herald_consumer_lag_records{JOB})",
                "{{stage}}"),
        _p95("Batch seconds p95 per stage", "herald_batch_seconds", "stage"),
        _p95("Produce / transaction seconds p95 per stage", "herald_produce_seconds", "stage"),
        _p95("Changelog write seconds p95", "herald_changelog_write_seconds", "stage"),
        _p95("Sink insert seconds p95 per table", "herald_sink_insert_seconds", "table"),
        _rate_by("Sink rows/s per table", "herald_sink_rows_total", "table"),
        _rate_by("Invalid events/s by reason", "herald_invalid_events_total", "reason"),
        _series("Errors/s: Kafka per stage, ClickHouse inserts", ERRORS, "{{stage}}", "cps"),
        _series("Duplicates, late drops, retries, dead letters /s",
                " or ".join(map(_named, OUTCOMES)), "{{what}}", "cps"),
        _series("Escalation transitions (last hour)",
                f"sum by (rule, state) (increase(herald_escalation_transitions_total{JOB}[1h]))",
                "{{rule}} {{state}}"),
        _series("CPU per process (cores)", f"rate(process_cpu_seconds_total{JOB}{RATE})",
                "{{instance}}"),
        _series("Memory per process (resident)", f"process_resident_memory_bytes{JOB}",
                "{{instance}}", "bytes"),
        _series("State keys per shard (estimate)", f"sum by (shard) (herald_state_keys{JOB})",
                "shard {{shard}}", width=24),
    ),
)
