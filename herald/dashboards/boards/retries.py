"""4. Retries and dead letters: by channel and attempt, by error code, the DLQ itself."""

from herald.dashboards.boards.common import (
    CHANNEL,
    CHANNEL_VAR,
    ESCALATION_ANNOTATION,
    TENANT,
    TENANT_VAR,
    WINDOWS,
)
from herald.dashboards.model import Dashboard, Panel

_STATS = f"FROM region_stats_1m FINAL WHERE {WINDOWS} AND {TENANT} AND {CHANNEL}"
_RETRIES = (
    f"FROM delivery_retries FINAL WHERE $__timeFilter(occurred_at) AND {TENANT} AND {CHANNEL}"
)
_BUCKET = "$__timeInterval(occurred_at) AS time"


def _stat(title: str, expr: str, unit: str = "short") -> Panel:
    return Panel(title, "stat", f"SELECT {expr} {_STATS}", width=8, height=4, unit=unit)


RETRIES = Dashboard(
    uid="herald-retries",
    title="Herald / Retries and dead letters",
    description="Retries scheduled by channel and attempt, dead letters by error code, the DLQ.",
    variables=(TENANT_VAR, CHANNEL_VAR),
    annotations=(ESCALATION_ANNOTATION,),
    panels=(
        _stat("Retries scheduled", "sum(retries_scheduled) AS retries_scheduled"),
        _stat("Dead lettered", "sum(dead_lettered) AS dead_lettered"),
        _stat(
            "Failures dead-lettered",
            "sum(dead_lettered) / nullIf(sum(failed), 0) AS dead_letter_share",
            unit="percentunit",
        ),
        Panel(
            "Retries scheduled per minute by channel",
            "timeseries",
            f"SELECT {_BUCKET}, channel, count() * 60 / $__interval_s AS retries"
            f" {_RETRIES} AND kind = 'retry' GROUP BY time, channel ORDER BY time, channel",
        ),
        Panel(
            "Dead letters per minute by channel",
            "timeseries",
            f"SELECT {_BUCKET}, channel, count() * 60 / $__interval_s AS dead_letters"
            f" {_RETRIES} AND kind = 'deadletter' GROUP BY time, channel ORDER BY time, channel",
        ),
        Panel(
            "Retries by attempt",
            "barchart",
            "SELECT concat('attempt ', toString(attempt)) AS next_attempt, count() AS retries"
            f" {_RETRIES} AND kind = 'retry' GROUP BY attempt ORDER BY attempt",
            options={"xField": "next_attempt"},
        ),
        Panel(
            "Dead letters by error code",
            "barchart",
            "SELECT if(last_error = '', '(none)', last_error) AS error_code,"
            " count() AS dead_letters"
            f" {_RETRIES} AND kind = 'deadletter'"
            " GROUP BY error_code ORDER BY dead_letters DESC LIMIT 20",
            options={"xField": "error_code"},
        ),
        Panel(
            "Dead-letter queue",
            "table",
            "SELECT occurred_at, tenant_id, broadcast_id, user_id, channel, region, attempt,"
            " last_error, history"
            f" {_RETRIES} AND kind = 'deadletter' ORDER BY occurred_at DESC LIMIT 200",
            width=24,
            height=10,
            description="history: every attempt with its time and error code (JSON).",
        ),
    ),
)
