"""Names and encodings shared by the rows the worker emits and the ClickHouse schema."""

import math

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
# BUCKETS_PER_OCTAVE per doubling (about 9 % wide), so they merge by summing maps and any
# percentile read from the middle of a bucket is within ~4.5 % of the truth.
BUCKETS_PER_OCTAVE = 8


def hist_bucket(ms: float) -> int:
    """The histogram bucket of a duration in milliseconds (below 1 ms counts as 1 ms)."""
    return math.floor(math.log2(max(ms, 1.0)) * BUCKETS_PER_OCTAVE)


def bucket_value(bucket: int) -> float:
    """The milliseconds a bucket stands for: its geometric middle (as the views compute)."""
    return float(2 ** ((bucket + 0.5) / BUCKETS_PER_OCTAVE))
