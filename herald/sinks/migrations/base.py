"""The released migrations 1-13: base tables and the first analysts' views.

Released migrations never change (see the package's docstring). Fragments shared by the two
windowed stats tables and by their two summary views are frozen with them.
"""

from __future__ import annotations

from herald.model.schema import COUNTERS
from herald.sinks.migrations.step import Migration

# Frozen fragments shared by the two windowed stats tables and by their two summary views.
_COUNTER_COLUMNS = ",\n".join(f"    {c} UInt64" for c in COUNTERS)
_COUNTER_SUMS = ",\n".join(f"        sum({c}) AS {c}" for c in COUNTERS)
_STATS_TAIL = """
    delivery_latency_hist Map(UInt16, UInt64) COMMENT 'delivery latency, ms, log2 buckets x8',
    time_to_read_hist Map(UInt16, UInt64) COMMENT 'read ack - sent, ms, log2 buckets x8',
    is_final UInt8 COMMENT '1 once the window is past its grace period',
    version UInt64,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)"""
# Per-key histogram percentiles (bucket indexes), and how much each histogram holds.
_HIST_QUANTILES = """
        quantilesExactWeightedArray(0.5, 0.95, 0.99)(
            mapKeys(delivery_latency_hist), mapValues(delivery_latency_hist)) AS latency_q,
        sum(arraySum(mapValues(delivery_latency_hist))) AS latency_n,
        quantilesExactWeightedArray(0.5, 0.95)(
            mapKeys(time_to_read_hist), mapValues(time_to_read_hist)) AS read_q,
        sum(arraySum(mapValues(time_to_read_hist))) AS read_n,
        max(updated_at) AS stats_updated_at"""
# A bucket index back to milliseconds (its geometric middle), NULL for an empty histogram.
_PERCENTILES = """
    if(latency_n = 0, NULL, pow(2, (latency_q[1] + 0.5) / 8)) AS delivery_latency_p50_ms,
    if(latency_n = 0, NULL, pow(2, (latency_q[2] + 0.5) / 8)) AS delivery_latency_p95_ms,
    if(latency_n = 0, NULL, pow(2, (latency_q[3] + 0.5) / 8)) AS delivery_latency_p99_ms,
    if(read_n = 0, NULL, pow(2, (read_q[1] + 0.5) / 8) / 1000) AS time_to_read_p50_s,
    if(read_n = 0, NULL, pow(2, (read_q[2] + 0.5) / 8) / 1000) AS time_to_read_p95_s"""
_COUNTER_NAMES = ", ".join(COUNTERS)

STEPS: tuple[Migration, ...] = (
    Migration(
        1,
        "create_broadcast_stats_1m",
        f"""
CREATE TABLE IF NOT EXISTS broadcast_stats_1m (
    tenant_id LowCardinality(String),
    broadcast_id String,
    window_start DateTime('UTC'),
    shard UInt16 COMMENT 'aggregation shard: a row is one shard''s partial; sum over shards',
{_COUNTER_COLUMNS},{_STATS_TAIL}
) ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, broadcast_id, window_start, shard)
""",
    ),
    Migration(
        2,
        "create_region_stats_1m",
        f"""
CREATE TABLE IF NOT EXISTS region_stats_1m (
    tenant_id LowCardinality(String),
    region LowCardinality(String),
    channel LowCardinality(String),
    window_start DateTime('UTC'),
    shard UInt16 COMMENT 'aggregation shard: a row is one shard''s partial; sum over shards',
{_COUNTER_COLUMNS},{_STATS_TAIL}
) ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, region, channel, window_start, shard)
""",
    ),
    Migration(
        3,
        "create_broadcasts",
        """
CREATE TABLE IF NOT EXISTS broadcasts (
    tenant_id LowCardinality(String),
    broadcast_id String,
    status LowCardinality(String) COMMENT 'type of the last lifecycle event',
    priority LowCardinality(String),
    channels Array(LowCardinality(String)),
    target_count UInt64,
    targeting_mode LowCardinality(String),
    segment String,
    content_format LowCardinality(String),
    language LowCardinality(String),
    ack_deadline_s Nullable(UInt32),
    expires_at Nullable(DateTime64(3, 'UTC')),
    created_at Nullable(DateTime64(3, 'UTC')),
    scheduled_at Nullable(DateTime64(3, 'UTC')),
    sent_at Nullable(DateTime64(3, 'UTC')),
    completed_at Nullable(DateTime64(3, 'UTC')),
    cancelled_at Nullable(DateTime64(3, 'UTC')),
    title String,
    version UInt64,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, broadcast_id)
""",
    ),
    # One row per transition; replacing, so a replayed transition is not counted twice.
    Migration(
        4,
        "create_escalations",
        """
CREATE TABLE IF NOT EXISTS escalations (
    escalation_id String,
    tenant_id LowCardinality(String),
    rule LowCardinality(String),
    subject String,
    level UInt8,
    state LowCardinality(String) COMMENT 'open | escalate | resolve',
    value Float64,
    threshold Float64,
    opened_at DateTime64(3, 'UTC'),
    occurred_at DateTime64(3, 'UTC'),
    message String,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, escalation_id, occurred_at, state, level)
""",
    ),
    Migration(
        5,
        "create_delivery_retries",
        """
CREATE TABLE IF NOT EXISTS delivery_retries (
    kind LowCardinality(String) COMMENT 'retry | deadletter',
    retry_id String,
    tenant_id LowCardinality(String),
    broadcast_id String,
    user_id String,
    channel LowCardinality(String),
    region LowCardinality(String),
    attempt UInt16,
    due_at Nullable(DateTime64(3, 'UTC')),
    last_error String,
    occurred_at DateTime64(3, 'UTC'),
    history String COMMENT 'JSON: the attempts (number, time, error code)',
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, kind, retry_id)
""",
    ),
    # TTL counts from ingestion, not event time, so replayed old events do not expire at once.
    # 30 days is the initial value; migrate() keeps it at the configured raw_ttl_days.
    Migration(
        6,
        "create_events_raw",
        """
CREATE TABLE IF NOT EXISTS events_raw (
    tenant_id LowCardinality(String),
    event_id String,
    topic LowCardinality(String),
    type LowCardinality(String),
    broadcast_id String,
    occurred_at DateTime64(3, 'UTC'),
    user_id String,
    channel LowCardinality(String),
    region LowCardinality(String),
    attempt UInt16,
    error_code LowCardinality(String),
    latency_ms Nullable(Float64),
    action_id String,
    payload String COMMENT 'the event as JSON',
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree()
ORDER BY (tenant_id, broadcast_id, event_id)
TTL toDateTime(ingested_at) + INTERVAL 30 DAY
""",
    ),
    Migration(
        7,
        "create_invalid_events",
        """
CREATE TABLE IF NOT EXISTS invalid_events (
    tenant_id LowCardinality(String) DEFAULT '' COMMENT 'best effort, empty when unknown',
    source_topic LowCardinality(String),
    source_partition UInt32,
    source_offset UInt64,
    error String,
    raw String COMMENT 'the message bytes, base64',
    received_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree()
ORDER BY (source_topic, source_partition, source_offset)
""",
    ),
    Migration(
        8,
        "create_pipeline_stats_1m",
        """
CREATE TABLE IF NOT EXISTS pipeline_stats_1m (
    tenant_id LowCardinality(String) DEFAULT '',
    component String COMMENT 'worker:host:pid, sink:host:pid, ...',
    window_start DateTime('UTC'),
    events_in UInt64,
    invalid UInt64,
    duplicates UInt64,
    late_dropped UInt64,
    rows_written UInt64,
    consumer_lag UInt64,
    version UInt64,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(version)
ORDER BY (component, window_start)
""",
    ),
    # Every broadcast known from its lifecycle events or from delivery stats (full join).
    Migration(
        9,
        "create_broadcast_summary",
        f"""
CREATE OR REPLACE VIEW broadcast_summary AS
WITH stats AS (
    SELECT
        tenant_id,
        broadcast_id,
{_COUNTER_SUMS},{_HIST_QUANTILES}
    FROM broadcast_stats_1m FINAL
    GROUP BY tenant_id, broadcast_id
)
SELECT
    tenant_id,
    broadcast_id,
    {_COUNTER_NAMES},
    delivered / nullIf(target_count, 0) AS delivery_rate,
    read / nullIf(delivered, 0) AS read_rate,
    failed / nullIf(delivered + failed, 0) AS failure_rate,{_PERCENTILES},
    status, priority, channels, target_count, targeting_mode, segment, content_format,
    language, ack_deadline_s, expires_at, created_at, scheduled_at, sent_at, completed_at,
    cancelled_at, title,
    greatest(stats_updated_at, b.updated_at) AS updated_at
FROM stats
FULL OUTER JOIN (SELECT * FROM broadcasts FINAL) AS b USING (tenant_id, broadcast_id)
COMMENT 'one row per broadcast; delivery_rate = delivered / target_count, NULL when unknown'
""",
    ),
    Migration(
        10,
        "create_region_summary",
        f"""
CREATE OR REPLACE VIEW region_summary AS
SELECT
    tenant_id,
    region,
    channel,
    {_COUNTER_NAMES},
    delivered / nullIf(delivered + failed + expired, 0) AS delivery_rate,
    read / nullIf(delivered, 0) AS read_rate,
    failed / nullIf(delivered + failed, 0) AS failure_rate,{_PERCENTILES},
    stats_updated_at AS updated_at
FROM (
    SELECT
        tenant_id,
        region,
        channel,
{_COUNTER_SUMS},{_HIST_QUANTILES}
    FROM region_stats_1m FINAL
    GROUP BY tenant_id, region, channel
)
COMMENT 'delivery_rate = delivered / (delivered + failed + expired): a region has no target count'
""",
    ),
    Migration(
        11,
        "create_open_escalations",
        """
CREATE OR REPLACE VIEW open_escalations AS
SELECT *
FROM (
    SELECT *
    FROM escalations FINAL
    ORDER BY tenant_id, escalation_id, occurred_at DESC, version DESC
    LIMIT 1 BY tenant_id, escalation_id
)
WHERE state != 'resolve'
COMMENT 'the latest transition of each escalation that is not resolved'
""",
    ),
    # Raw events arrive as the positional rows of `herald.events` (JSONCompactEachRow): the
    # event time as epoch ms in an EPHEMERAL `ts`, and what only broadcasts carry in payload.
    Migration(
        12,
        "events_raw_compact_rows",
        """
ALTER TABLE events_raw
    ADD COLUMN IF NOT EXISTS ts Int64 EPHEMERAL COMMENT 'occurred_at, epoch ms (insert only)',
    MODIFY COLUMN occurred_at DateTime64(3, 'UTC') DEFAULT fromUnixTimestamp64Milli(ts, 'UTC'),
    MODIFY COLUMN attempt UInt64,
    ADD COLUMN IF NOT EXISTS retryable Nullable(Bool) AFTER error_code,
    MODIFY COLUMN payload String COMMENT 'broadcasts: their other fields as JSON'
""",
    ),
    # One row per retry id with its latest outcome; the attempt history as JSON objects.
    Migration(
        13,
        "delivery_retries_outcome",
        """
ALTER TABLE delivery_retries
    ADD COLUMN IF NOT EXISTS outcome LowCardinality(String)
        COMMENT 'retry: scheduled | published | cancelled; deadletter: deadletter' AFTER history
""",
    ),
)
