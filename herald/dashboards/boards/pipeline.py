"""6. Pipeline health: events in, invalid, duplicates, late, lag, rows written, ingest delay,
tenants against their quotas."""

from herald.dashboards.boards.common import (
    BUCKET,
    COMPONENT,
    PER_S,
    USAGE,
    WINDOWS,
    escalation_annotation,
)
from herald.dashboards.model import Dashboard, Panel, Variable

_STATS = f"FROM pipeline_stats_1m FINAL WHERE {WINDOWS} AND {COMPONENT}"

COMPONENT_VAR = Variable(
    "component",
    "Component",
    "SELECT component FROM pipeline_stats_1m GROUP BY component ORDER BY component",
)


def _stat(title: str, column: str) -> Panel:
    return Panel(title, "stat", f"SELECT sum({column}) AS {column} {_STATS}", width=6, height=4)


def _per_component(title: str, expr: str, unit: str = "cps") -> Panel:
    return Panel(
        title,
        "timeseries",
        f"SELECT {BUCKET}, component, {expr} {_STATS}"
        " GROUP BY time, component ORDER BY time, component",
        unit=unit,
    )


PIPELINE = Dashboard(
    uid="herald-pipeline",
    title="Herald / Pipeline health",
    description="Workers and sinks: throughput, invalid, duplicate and late events, lag.",
    variables=(COMPONENT_VAR,),
    annotations=(escalation_annotation("1=1"),),
    panels=(
        _stat("Events in", "events_in"),
        _stat("Invalid", "invalid"),
        _stat("Duplicates", "duplicates"),
        _stat("Late, dropped", "late_dropped"),
        _per_component("Events in/s by component", f"sum(events_in) {PER_S} AS events_in"),
        Panel(
            "Invalid, duplicate and late events/s",
            "timeseries",
            f"SELECT {BUCKET}, sum(invalid) {PER_S} AS invalid,"
            f" sum(duplicates) {PER_S} AS duplicates, sum(late_dropped) {PER_S} AS late_dropped"
            f" {_STATS} GROUP BY time ORDER BY time",
            unit="cps",
        ),
        _per_component("Consumer lag by component", "max(consumer_lag) AS consumer_lag", "short"),
        _per_component("Rows written/s by component", f"sum(rows_written) {PER_S} AS rows_written"),
        Panel(
            "Ingest delay (event time to stored)",
            "timeseries",
            "SELECT $__timeInterval(ingested_at) AS time,"
            " quantile(0.5)(dateDiff('millisecond', occurred_at, ingested_at)) AS p50_ms,"
            " quantile(0.95)(dateDiff('millisecond', occurred_at, ingested_at)) AS p95_ms"
            " FROM events_raw WHERE $__timeFilter(ingested_at) GROUP BY time ORDER BY time",
            unit="ms",
            description="Stored in ClickHouse minus event time: the sink's end-to-end latency"
            " on live traffic (a replay of old events shows its age instead).",
        ),
        Panel(
            "Tenant quotas: usage and overage",
            "table",
            "SELECT tenant_id, any(quota_per_s) AS quota,"
            " round(max(events_per_s), 2) AS peak_events_per_s,"
            " countIf(over_quota) AS minutes_over_quota, sum(overage_events) AS overage_events"
            f" {USAGE} AND quota_per_s IS NOT NULL GROUP BY tenant_id"
            " ORDER BY overage_events DESC, tenant_id",
            description="Tenants with a configured quota, over the time range (event time):"
            " the busiest minute, the minutes above quota and the events beyond it. Nothing"
            " over quota is dropped; tenant_quota escalates a tenant over it for 5 minutes.",
        ),
        Panel(
            "Overage events/s by tenant",
            "timeseries",
            f"SELECT {BUCKET}, tenant_id, sum(overage_events) {PER_S} AS overage_per_s"
            f" {USAGE} AND over_quota GROUP BY time, tenant_id ORDER BY time, tenant_id",
            unit="cps",
            description="Events beyond the quota, per tenant and event-time minute.",
        ),
        Panel(
            "Invalid events by error",
            "barchart",
            "SELECT substring(error, 1, 60) AS error, count() AS messages"
            " FROM invalid_events FINAL WHERE $__timeFilter(received_at)"
            " GROUP BY error ORDER BY messages DESC LIMIT 15",
            options={"xField": "error"},
        ),
        Panel(
            "Latest invalid events",
            "table",
            "SELECT received_at, source_topic, source_partition, source_offset, tenant_id, error,"
            " substring(raw, 1, 120) AS raw_base64"
            " FROM invalid_events FINAL WHERE $__timeFilter(received_at)"
            " ORDER BY received_at DESC LIMIT 100",
            width=24,
        ),
    ),
)
