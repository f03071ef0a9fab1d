"""Engagement (migrations 40-41): poll results and rates by the broadcasts' dimensions.

Analysts compare delivery, read and response rates across targeting modes, segments, content
formats, priorities, languages and channels without writing joins: `dimension_summary` has
one row per (tenant, dimension, value). `poll_results` counts distinct responders and clicks
per option of interactive broadcasts from `events_raw` (FINAL: one row per event id).
"""

from __future__ import annotations

from herald.sinks.migrations.step import Migration

_BROADCAST_DIMENSIONS = ("targeting_mode", "segment", "content_format", "priority", "language")
_RATES = """
    recipients_delivered / nullIf(targeted, 0) AS delivery_rate,
    recipients_read / nullIf(recipients_delivered, 0) AS read_rate,
    recipients_responded / nullIf(recipients_delivered, 0) AS response_rate"""

STEPS: tuple[Migration, ...] = (
    Migration(
        40,
        "create_poll_results",
        """
CREATE OR REPLACE VIEW poll_results AS
SELECT
    tenant_id,
    broadcast_id,
    action_id,
    uniqExactIf(user_id, type = 'responded') AS responders,
    countIf(type = 'clicked') AS clicks,
    uniqExactIf(user_id, type = 'clicked') AS clickers,
    responders / nullIf(sum(responders) OVER (PARTITION BY tenant_id, broadcast_id), 0) AS share
FROM events_raw FINAL
WHERE type IN ('responded', 'clicked') AND action_id != ''
GROUP BY tenant_id, broadcast_id, action_id
COMMENT 'one row per poll option or button: distinct responders, clicks; share of responders'
""",
    ),
    # Broadcast attributes from broadcast_summary (its recipients are exact); a channel's
    # from broadcast_channel_summary, whose targets are the broadcasts' (no per-channel
    # responses: a response counts once per user, on whichever channel).
    Migration(
        41,
        "create_dimension_summary",
        f"""
CREATE OR REPLACE VIEW dimension_summary AS
SELECT tenant_id, dimension, value, broadcasts, targeted, recipients_delivered,
       recipients_read, recipients_responded, {_RATES}
FROM (
    SELECT
        tenant_id, dimension, value,
        count() AS broadcasts,
        sum(target_count) AS targeted,
        sum(recipients_delivered) AS recipients_delivered,
        sum(recipients_read) AS recipients_read,
        toNullable(sum(recipients_responded)) AS recipients_responded
    FROM broadcast_summary
    ARRAY JOIN {list(_BROADCAST_DIMENSIONS)} AS dimension,
               [{", ".join(_BROADCAST_DIMENSIONS)}] AS value
    WHERE value != ''
    GROUP BY tenant_id, dimension, value
    UNION ALL
    SELECT
        c.tenant_id AS tenant_id, 'channel' AS dimension, c.channel AS value,
        count() AS broadcasts,
        sum(b.target_count) AS targeted,
        sum(c.recipients_delivered) AS recipients_delivered,
        sum(c.recipients_read) AS recipients_read,
        CAST(NULL, 'Nullable(UInt64)') AS recipients_responded
    FROM broadcast_channel_summary AS c
    LEFT JOIN (SELECT tenant_id, broadcast_id, target_count FROM broadcasts FINAL) AS b
        ON b.tenant_id = c.tenant_id AND b.broadcast_id = c.broadcast_id
    GROUP BY tenant_id, dimension, value
)
COMMENT 'one row per (tenant, dimension, value): reach and rates over the broadcasts'
""",
    ),
)
