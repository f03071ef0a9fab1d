"""Mergeable log-bucket histograms (about 9 % wide buckets, ~4.5 % error at the middle).

A bucket is floor(log2(max(ms, 1)) * 8), stored as a string key so the same dict goes through
JSON, RocksDB and ClickHouse's Map(UInt16, UInt64) unchanged. Merging is adding counts, so
partial histograms from shards and windows combine exactly (ClickHouse: sumMap).
"""

from __future__ import annotations

import math

from herald.model.schema import BUCKETS_PER_OCTAVE

Histogram = dict[str, int]


def bucket(ms: float) -> str:
    return str(int(math.log2(max(ms, 1.0)) * BUCKETS_PER_OCTAVE))


def bucket_value(b: int) -> float:
    """The geometric middle of a bucket, used when reading percentiles back."""
    return float(2 ** ((b + 0.5) / BUCKETS_PER_OCTAVE))


def add(hist: Histogram, ms: float) -> None:
    key = bucket(ms)
    hist[key] = hist.get(key, 0) + 1


def merge(into: Histogram, other: Histogram) -> None:
    for key, n in other.items():
        into[key] = into.get(key, 0) + n


def quantile(hist: Histogram, q: float) -> float | None:
    """The q-quantile by weighted rank over buckets (what the ClickHouse views compute)."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for b in sorted(hist, key=int):
        seen += hist[b]
        if seen >= rank:
            return bucket_value(int(b))
    return bucket_value(int(max(hist, key=int)))
