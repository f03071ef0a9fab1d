"""1. Overview: traffic, delivery and read rates, failures, active broadcasts, escalations."""

from herald.dashboards.boards.common import (
    BUCKET,
    ESCALATION_ANNOTATION,
    PER_S,
    TENANT,
    TENANT_VAR,
    USAGE,
    WINDOWS,
)
from herald.dashboards.model import Dashboard, Panel

_REGIONS = f"FROM region_stats_1m FINAL WHERE {WINDOWS} AND {TENANT}"
_ACTIVE = (
    f"(tenant_id, broadcast_id) IN (SELECT tenant_id, broadcast_id FROM broadcast_stats_1m"
    f" WHERE {WINDOWS} AND {TENANT})"
)


def _stat(title: str, expr: str, unit: str = "short", source: str = _REGIONS) -> Panel:
    return Panel(title, "stat", f"SELECT {expr} {source}", width=4, height=4, unit=unit)


OVERVIEW = Dashboard(
    uid="herald-overview",
    title="Herald / Overview",
    description="Traffic, delivery and read rates, failures, active broadcasts, escalations.",
    variables=(TENANT_VAR,),
    annotations=(ESCALATION_ANNOTATION,),
    panels=(
        _stat("Delivered", "sum(delivered) AS delivered"),
        _stat(
            "Delivery success",
            "sum(delivered) / nullIf(sum(delivered) + sum(failed) + sum(expired), 0)"
            " AS delivery_success",
            unit="percentunit",
        ),
        _stat("Read rate", "sum(read) / nullIf(sum(delivered), 0) AS read_rate", "percentunit"),
        _stat("Failed", "sum(failed) AS failed"),
        _stat(
            "Active broadcasts",
            "uniqExact(broadcast_id) AS broadcasts",
            source=f"FROM broadcast_stats_1m WHERE {WINDOWS} AND {TENANT}",
        ),
        _stat(
            "Open escalations", "count() AS open", source=f"FROM open_escalations WHERE {TENANT}"
        ),
        Panel(
            "Events/s by topic",
            "timeseries",
            f"SELECT {BUCKET},"
            f" sum(queued + attempted + delivered + failed + pending + expired) {PER_S}"
            " AS deliveries,"
            f" sum(received + read + clicked + dismissed + responded) {PER_S} AS acks"
            f" {_REGIONS} GROUP BY time ORDER BY time",
            unit="cps",
            description="Distinct events counted per topic, by event time.",
        ),
        Panel(
            "Events/s against quota",
            "timeseries",
            f"SELECT {BUCKET}, tenant_id, sum(events) {PER_S} AS events_per_s,"
            f" max(quota_per_s) AS quota_per_s {USAGE} AND {TENANT}"
            " GROUP BY time, tenant_id ORDER BY time, tenant_id",
            unit="cps",
            description="Deliveries and acks counted per tenant (what tenant_quota meters), by"
            " event time, and the tenant's configured quota (none: no line). tenant_quota opens"
            " when the average over its window (5 min) is above the quota.",
        ),
        Panel(
            "Delivery success and read rate",
            "timeseries",
            f"SELECT {BUCKET},"
            " sum(delivered) / nullIf(sum(delivered) + sum(failed) + sum(expired), 0)"
            " AS delivery_success,"
            " sum(read) / nullIf(sum(delivered), 0) AS read_rate"
            f" {_REGIONS} GROUP BY time ORDER BY time",
            unit="percentunit",
        ),
        Panel(
            "Failures/s by channel",
            "timeseries",
            f"SELECT {BUCKET}, channel, sum(failed) {PER_S} AS failed"
            f" {_REGIONS} GROUP BY time, channel ORDER BY time, channel",
            unit="cps",
        ),
        Panel(
            "Active broadcasts",
            "timeseries",
            f"SELECT {BUCKET}, uniqExact(broadcast_id) AS active_broadcasts"
            f" FROM broadcast_stats_1m WHERE {WINDOWS} AND {TENANT} GROUP BY time ORDER BY time",
        ),
        Panel(
            "Broadcasts active in the time range",
            "table",
            "SELECT tenant_id, broadcast_id, title, priority, status, target_count,"
            " recipients_delivered, recipients_read, delivered, read, failed,"
            " round(delivery_rate, 4) AS delivery_rate,"
            " round(read_rate, 4) AS read_rate, round(failure_rate, 4) AS failure_rate,"
            " round(delivery_latency_p95_ms) AS latency_p95_ms, sent_at"
            f" FROM broadcast_summary WHERE {TENANT} AND {_ACTIVE}"
            " ORDER BY sent_at DESC NULLS LAST, delivered DESC LIMIT 100",
            width=24,
            height=9,
            description="Totals over each broadcast's whole life (view broadcast_summary).",
        ),
        Panel(
            "Open escalations",
            "table",
            "SELECT opened_at, rule, subject, level, value, threshold, message"
            f" FROM open_escalations WHERE {TENANT} ORDER BY level DESC, opened_at",
            width=24,
            height=6,
        ),
    ),
)
