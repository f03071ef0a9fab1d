"""Names and encodings shared by the rows the worker emits and the ClickHouse schema."""

DATABASE = "herald"

# The counters of broadcast_stats_1m and region_stats_1m, in column order (UInt64 each).
COUNTERS: tuple[str, ...] = (
    "queued",
    "attempted",
    "delivered",
    "failed",
    "pending",
    "expired",
    "received",
    "read",
    "clicked",
    "dismissed",
    "responded",
    "retries_scheduled",
    "dead_lettered",
)

# Histograms (delivery_latency_hist, time_to_read_hist) count milliseconds in log buckets,
# b = floor(log2(max(ms, 1)) * BUCKETS_PER_OCTAVE), about 9 % wide; they merge by summing maps
# and the views read a bucket back as its geometric middle 2^((b + 0.5) / BUCKETS_PER_OCTAVE),
# within ~4.5 % of the truth (herald.tables.histogram computes them on the worker side).
BUCKETS_PER_OCTAVE = 8
