"""SQL fragments and variables the dashboards share.

Stats tables hold one partial row per aggregation shard: every query reads them with FINAL
and sums over shards. Histograms are log buckets (herald.model.schema): bucket b stands for
2^((b + 0.5) / 8) ms, and percentiles over any set of rows merge by weight.
"""

from __future__ import annotations

from collections.abc import Mapping

from herald.dashboards.model import Variable
from herald.model.schema import BUCKETS_PER_OCTAVE


def var_filter(column: str, variable: str) -> str:
    """`column IN (selected values)`, or `1=1` when the variable is All (cheaper than a list)."""
    return f"$__conditionalAll({column} IN (${{{variable}:singlequote}}), ${variable})"


TENANT = var_filter("tenant_id", "tenant")
BROADCAST = var_filter("broadcast_id", "broadcast")
REGION = var_filter("region", "region")
CHANNEL = var_filter("channel", "channel")
COMPONENT = var_filter("component", "component")
WINDOWS = "$__timeFilter(window_start)"
BUCKET = "$__timeInterval(window_start) AS time"
PER_S = "/ $__interval_s"  # counts per bucket -> per second

# Event-time minutes of each tenant's metered events against its quota (view tenant_usage_1m).
USAGE = f"FROM tenant_usage_1m WHERE {WINDOWS}"

TENANT_VAR = Variable(
    "tenant",
    "Tenant",
    "SELECT tenant_id FROM region_stats_1m GROUP BY tenant_id ORDER BY tenant_id",
)
BROADCAST_VAR = Variable(
    "broadcast",
    "Broadcast",
    "SELECT broadcast_id FROM broadcast_stats_1m"
    f" WHERE {WINDOWS} AND {TENANT} GROUP BY broadcast_id ORDER BY broadcast_id LIMIT 1000",
    refresh_on_time=True,
)
REGION_VAR = Variable(
    "region",
    "Region",
    f"SELECT region FROM region_stats_1m WHERE {TENANT} GROUP BY region ORDER BY region",
)
CHANNEL_VAR = Variable(
    "channel",
    "Channel",
    f"SELECT channel FROM region_stats_1m WHERE {TENANT} GROUP BY channel ORDER BY channel",
)


def escalation_annotation(where: str = TENANT) -> tuple[str, str]:
    """Escalation transitions as annotations (the pipeline dashboard has no tenant filter)."""
    return (
        "Escalations",
        "SELECT toDateTime(occurred_at) AS time,"
        " concat(rule, ' ', state, ' (level ', toString(level), '): ', message) AS text"
        f" FROM escalations FINAL WHERE $__timeFilter(occurred_at) AND {where} ORDER BY time",
    )


ESCALATION_ANNOTATION = escalation_annotation()


def hist_percentiles(
    hist: str,
    levels: Mapping[str, float],
    source: str,
    keys: tuple[str, ...] = (),
    scale: str = "",
) -> str:
    """Percentiles of a histogram column per group of `keys` ("expr AS alias"), or overall.

    `source` is the FROM/WHERE clause; `scale` (e.g. "/ 1000") converts milliseconds.
    A group with an empty histogram yields NULL, not the middle of bucket 0.
    """
    aliases = [key.rsplit(" AS ", 1)[-1] for key in keys]
    quantiles = ", ".join(str(level) for level in levels.values())
    values = ", ".join(
        f"if(n = 0, NULL, round(pow(2, (q[{i}] + 0.5) / {BUCKETS_PER_OCTAVE}) {scale}, 3))"
        f" AS {name}"
        for i, name in enumerate(levels, start=1)
    )
    group = f" GROUP BY {', '.join(aliases)}" if keys else ""
    order = f" ORDER BY {', '.join(aliases)}" if keys else ""
    inner_keys = "".join(f"{key}, " for key in keys)
    outer_keys = "".join(f"{alias}, " for alias in aliases)
    return (
        f"SELECT {outer_keys}{values} FROM ("
        f"SELECT {inner_keys}"
        f"quantilesExactWeightedArray({quantiles})(mapKeys({hist}), mapValues({hist})) AS q,"
        f" sum(arraySum(mapValues({hist}))) AS n"
        f" {source}{group}){order}"
    )


LATENCY_LEVELS = {"p50_ms": 0.5, "p95_ms": 0.95, "p99_ms": 0.99}
READ_LEVELS = {"p50_s": 0.5, "p95_s": 0.95}
