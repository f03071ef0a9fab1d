"""Reach (migrations 14-18): exact distinct recipients next to the per-channel counters.

`delivery_rate` becomes recipients_delivered / target_count (SPEC §2: a target counts users,
while `delivered` counts user x channel pairs, so the old ratio passed 1), and `read_rate`
recipients_read / recipients_delivered.
"""

from __future__ import annotations

from herald.sinks.migrations.base import COUNTER_NAMES, COUNTER_SUMS, HIST_QUANTILES, PERCENTILES
from herald.sinks.migrations.step import Migration

_RECIPIENTS = """recipients_delivered UInt64 DEFAULT 0
        COMMENT 'users first delivered in this window',
    ADD COLUMN IF NOT EXISTS recipients_read UInt64 DEFAULT 0
        COMMENT 'users first read in this window',
    ADD COLUMN IF NOT EXISTS recipients_responded UInt64 DEFAULT 0
        COMMENT 'users whose first response (poll answer, button) is in this window'"""
_RECIPIENT_SUMS = """,
        sum(recipients_delivered) AS recipients_delivered,
        sum(recipients_read) AS recipients_read,
        sum(recipients_responded) AS recipients_responded"""

STEPS: tuple[Migration, ...] = (
    Migration(
        14,
        "broadcast_stats_recipients",
        f"""
ALTER TABLE broadcast_stats_1m
    ADD COLUMN IF NOT EXISTS {_RECIPIENTS},
    ADD COLUMN IF NOT EXISTS channel_recipients_delivered Map(LowCardinality(String), UInt64)
        COMMENT 'per channel: users first delivered on it in this window',
    ADD COLUMN IF NOT EXISTS channel_recipients_read Map(LowCardinality(String), UInt64)
        COMMENT 'per channel: users first read on it in this window'
""",
    ),
    Migration(
        15,
        "region_stats_recipients",
        f"""
ALTER TABLE region_stats_1m
    ADD COLUMN IF NOT EXISTS {_RECIPIENTS}
""",
    ),
    Migration(
        16,
        "broadcast_summary_reach",
        f"""
CREATE OR REPLACE VIEW broadcast_summary AS
WITH stats AS (
    SELECT
        tenant_id,
        broadcast_id,
{COUNTER_SUMS}{_RECIPIENT_SUMS},
        sumMap(channel_recipients_delivered) AS channel_recipients_delivered,
        sumMap(channel_recipients_read) AS channel_recipients_read,{HIST_QUANTILES}
    FROM broadcast_stats_1m FINAL
    GROUP BY tenant_id, broadcast_id
)
SELECT
    tenant_id,
    broadcast_id,
    {COUNTER_NAMES},
    recipients_delivered, recipients_read, recipients_responded,
    recipients_delivered / nullIf(target_count, 0) AS delivery_rate,
    recipients_read / nullIf(recipients_delivered, 0) AS read_rate,
    recipients_responded / nullIf(recipients_delivered, 0) AS response_rate,
    failed / nullIf(delivered + failed, 0) AS failure_rate,{PERCENTILES},
    status, priority, channels, target_count, targeting_mode, segment, content_format,
    language, ack_deadline_s, expires_at, created_at, scheduled_at, sent_at, completed_at,
    cancelled_at, title,
    channel_recipients_delivered, channel_recipients_read,
    greatest(stats_updated_at, b.updated_at) AS updated_at
FROM stats
FULL OUTER JOIN (SELECT * FROM broadcasts FINAL) AS b USING (tenant_id, broadcast_id)
COMMENT 'one row per broadcast; delivery_rate = recipients_delivered / target_count (users)'
""",
    ),
    Migration(
        17,
        "region_summary_reach",
        f"""
CREATE OR REPLACE VIEW region_summary AS
SELECT
    tenant_id,
    region,
    channel,
    {COUNTER_NAMES},
    recipients_delivered, recipients_read, recipients_responded,
    delivered / nullIf(delivered + failed + expired, 0) AS delivery_rate,
    read / nullIf(delivered, 0) AS read_rate,
    failed / nullIf(delivered + failed, 0) AS failure_rate,{PERCENTILES},
    stats_updated_at AS updated_at
FROM (
    SELECT
        tenant_id,
        region,
        channel,
{COUNTER_SUMS}{_RECIPIENT_SUMS},{HIST_QUANTILES}
    FROM region_stats_1m FINAL
    GROUP BY tenant_id, region, channel
)
COMMENT 'recipients: (broadcast, user) pairs first reached on this region and channel'
""",
    ),
    Migration(
        18,
        "create_broadcast_channel_summary",
        """
CREATE OR REPLACE VIEW broadcast_channel_summary AS
SELECT
    s.tenant_id AS tenant_id,
    s.broadcast_id AS broadcast_id,
    channel,
    s.delivered_on[channel] AS recipients_delivered,
    s.read_on[channel] AS recipients_read,
    recipients_delivered / nullIf(b.target_count, 0) AS delivery_rate,
    recipients_read / nullIf(recipients_delivered, 0) AS read_rate
FROM (
    SELECT
        tenant_id,
        broadcast_id,
        sumMap(channel_recipients_delivered) AS delivered_on,
        sumMap(channel_recipients_read) AS read_on
    FROM broadcast_stats_1m FINAL
    GROUP BY tenant_id, broadcast_id
) AS s
ARRAY JOIN arrayDistinct(arrayConcat(mapKeys(s.delivered_on), mapKeys(s.read_on))) AS channel
LEFT JOIN (SELECT tenant_id, broadcast_id, target_count FROM broadcasts FINAL) AS b
    ON b.tenant_id = s.tenant_id AND b.broadcast_id = s.broadcast_id
COMMENT 'one row per (broadcast, channel): users reached on that channel, exact'
""",
    ),
)
