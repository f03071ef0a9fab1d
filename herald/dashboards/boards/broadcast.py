"""2. Broadcast drill-down: funnel, channels, latency and time to read, poll answers."""

from herald.dashboards.boards.common import (
    BROADCAST,
    BROADCAST_VAR,
    BUCKET,
    ESCALATION_ANNOTATION,
    LATENCY_LEVELS,
    READ_LEVELS,
    TENANT,
    TENANT_VAR,
    WINDOWS,
    hist_percentiles,
)
from herald.dashboards.model import Dashboard, Panel

_STATS = f"FROM broadcast_stats_1m FINAL WHERE {WINDOWS} AND {TENANT} AND {BROADCAST}"
_RAW = f"FROM events_raw FINAL WHERE $__timeFilter(occurred_at) AND {TENANT} AND {BROADCAST}"
_FUNNEL = ("queued", "delivered", "received", "read", "clicked", "responded")

BROADCAST_DRILLDOWN = Dashboard(
    uid="herald-broadcast",
    title="Herald / Broadcast drill-down",
    description="One broadcast (or a selection): funnel, channels, latency, time to read, polls.",
    variables=(TENANT_VAR, BROADCAST_VAR),
    annotations=(ESCALATION_ANNOTATION,),
    panels=(
        Panel(
            "Funnel",
            "barchart",
            "SELECT stage, users FROM ("
            f"SELECT {', '.join(f'sum({c}) AS {c}' for c in _FUNNEL)} {_STATS})"
            f" ARRAY JOIN {list(_FUNNEL)} AS stage, [{', '.join(_FUNNEL)}] AS users",
            height=9,
            description="queued → delivered → received → read → clicked / responded",
            options={"xField": "stage"},
        ),
        Panel(
            "Broadcast",
            "table",
            "SELECT broadcast_id, title, status, priority, arrayStringConcat(channels, ', ')"
            " AS channels, target_count, recipients_delivered, recipients_read, delivered, read,"
            " round(delivery_rate, 4)"
            " AS delivery_rate, round(read_rate, 4) AS read_rate,"
            " round(failure_rate, 4) AS failure_rate, sent_at, completed_at"
            f" FROM broadcast_summary WHERE {TENANT} AND {BROADCAST}"
            " AND (tenant_id, broadcast_id) IN (SELECT tenant_id, broadcast_id"
            f" FROM broadcast_stats_1m WHERE {WINDOWS} AND {TENANT} AND {BROADCAST})"
            " ORDER BY sent_at DESC NULLS LAST LIMIT 100",
            height=9,
            description="Lifetime totals and rates (view broadcast_summary).",
        ),
        Panel(
            "By channel",
            "barchart",
            "SELECT channel, countIf(type = 'delivered') AS delivered,"
            " countIf(type = 'failed') AS failed, countIf(type = 'pending') AS pending,"
            " countIf(type = 'read') AS read"
            f" {_RAW} AND channel != '' GROUP BY channel ORDER BY channel",
            options={"xField": "channel"},
        ),
        Panel(
            "Reach by channel",
            "barchart",
            "SELECT channel, sum(recipients_delivered) AS recipients_delivered,"
            " sum(recipients_read) AS recipients_read FROM broadcast_channel_summary"
            f" WHERE {TENANT} AND {BROADCAST} GROUP BY channel ORDER BY channel",
            options={"xField": "channel"},
            description="Distinct users delivered and read on each channel over the"
            " broadcasts' lifetime, exact (view broadcast_channel_summary).",
        ),
        Panel(
            "Delivered and read per minute",
            "timeseries",
            f"SELECT {BUCKET}, sum(delivered) * 60 / $__interval_s AS delivered,"
            " sum(read) * 60 / $__interval_s AS read, sum(failed) * 60 / $__interval_s AS failed"
            f" {_STATS} GROUP BY time ORDER BY time",
        ),
        Panel(
            "Delivery latency percentiles",
            "timeseries",
            hist_percentiles("delivery_latency_hist", LATENCY_LEVELS, _STATS, keys=(BUCKET,)),
            unit="ms",
        ),
        Panel(
            "Delivery latency",
            "stat",
            hist_percentiles("delivery_latency_hist", LATENCY_LEVELS, _STATS),
            width=6,
            unit="ms",
        ),
        Panel(
            "Time to read",
            "stat",
            hist_percentiles("time_to_read_hist", READ_LEVELS, _STATS, scale="/ 1000"),
            width=6,
            unit="s",
            description="Read ack time minus the broadcast's sent time.",
        ),
        Panel(
            "Poll results",
            "barchart",
            "SELECT action_id, sum(r) AS responders,"
            " round(sum(r) / nullIf(any(total), 0), 4) AS share, sum(c) AS clicks"
            " FROM (SELECT action_id, responders AS r, clicks AS c,"
            " sum(responders) OVER () AS total FROM poll_results"
            f" WHERE {TENANT} AND {BROADCAST})"
            " GROUP BY action_id ORDER BY responders DESC, clicks DESC LIMIT 20",
            width=24,
            options={"xField": "action_id"},
            description="Distinct responders per option and each option's share of them;"
            " clicks on buttons (view poll_results).",
        ),
    ),
)
