"""Tenant quotas (migrations 50-53): the configured quotas, and each tenant's usage per minute
against its quota, for analysts and the dashboards.

- `tenant_quotas`: one row per tenant that has or had a quota (`[escalations.tenant_quota]
  quotas`), `quota_per_s` NULL once the config dropped it. `migrate` keeps it in step with the
  config of the process that runs it (`herald db migrate`, every sink at start): a changed,
  new or dropped quota is a row with a newer `version`, so the last process to start decides.
- `tenant_usage_1m`: per tenant and event-time minute, the events the `tenant_quota` rule
  meters, i.e. the deliveries and acks the tenant's windows count (deduplicated, on time: the
  event counters of region_stats_1m, summed over regions, channels and shards), against the
  quota. `overage_events` is what the minute held above quota x 60. The rule looks at the
  average over its window (5 minutes by default), so a single minute over quota opens nothing;
  the view's minutes summed over a window are the rule's value at that window's end.

Nothing is dropped over quota: the view only shows it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from clickhouse_connect.driver import Client

from herald.sinks import clickhouse
from herald.sinks.migrations.step import Migration
from herald.sinks.migrations.tenancy import row_policies

# Frozen with step 51: the counters one delivery or ack event moves (the other two,
# retries_scheduled and dead_lettered, follow from failed events and are not events).
_EVENT_COUNTERS = ("queued", "attempted", "delivered", "failed", "pending", "expired",
                   "received", "read", "clicked", "dismissed", "responded")  # fmt: skip

STEPS: tuple[Migration, ...] = (
    Migration(
        50,
        "create_tenant_quotas",
        """
CREATE TABLE IF NOT EXISTS tenant_quotas (
    tenant_id LowCardinality(String),
    quota_per_s Nullable(Float64) COMMENT 'events/s; NULL: no quota any more',
    version UInt64,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(version)
ORDER BY tenant_id
""",
    ),
    Migration(
        51,
        "create_tenant_usage_1m",
        f"""
CREATE OR REPLACE VIEW tenant_usage_1m AS
SELECT
    u.tenant_id AS tenant_id,
    u.window_start AS window_start,
    u.events AS events,
    u.events / 60 AS events_per_s,
    q.quota_per_s AS quota_per_s,
    ifNull(u.events > q.quota_per_s * 60, false) AS over_quota,
    ifNull(greatest(u.events - q.quota_per_s * 60, 0), 0) AS overage_events,
    u.is_final AS is_final
FROM (
    SELECT tenant_id, window_start, sum({" + ".join(_EVENT_COUNTERS)}) AS events,
           min(is_final) AS is_final
    FROM region_stats_1m FINAL
    GROUP BY tenant_id, window_start
) AS u
LEFT JOIN (
    SELECT tenant_id, quota_per_s FROM tenant_quotas FINAL WHERE quota_per_s IS NOT NULL
) AS q ON q.tenant_id = u.tenant_id
COMMENT 'per tenant and minute: the events tenant_quota meters, against the quota (NULL: none)'
""",
    ),
    # tenant_quotas has a tenant_id: a tenant's users see their own quota only (server mode).
    *row_policies(52, ("tenant_quotas",), "tenant_quotas_row_policy",
                  "tenant_quotas_operators_row_policy"),
)


def sync_quotas(client: Client, quotas: Mapping[str, float]) -> list[str]:
    """Make `tenant_quotas` say `quotas`; one line per tenant whose quota changed."""
    result = client.query("SELECT tenant_id, quota_per_s FROM tenant_quotas FINAL")
    stored: dict[str, float | None] = {row[0]: row[1] for row in result.result_rows}
    version = time.time_ns()
    changed: dict[str, float | None] = {t: q for t, q in quotas.items() if stored.get(t) != q}
    changed.update({t: None for t, q in stored.items() if q is not None and t not in quotas})
    rows = [{"tenant_id": t, "quota_per_s": q, "version": version}
            for t, q in sorted(changed.items())]  # fmt: skip
    if rows:
        clickhouse.insert(client, "tenant_quotas", rows)
    return [f"tenant_quotas: {r['tenant_id']} "
            + ("no quota" if r["quota_per_s"] is None else f"{r['quota_per_s']:g} events/s")
            for r in rows]  # fmt: skip
