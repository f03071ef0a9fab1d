"""Mergeable log-bucket histograms: bucket math, merging, percentiles within 5 % (SPEC §4)."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from herald.tables import histogram
from herald.tables.histogram import Histogram


def of(values: list[float]) -> Histogram:
    hist: Histogram = {}
    for value in values:
        histogram.add(hist, value)
    return hist


def exact_percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


@pytest.mark.parametrize(
    ("ms", "key"),
    [
        (0, "0"),  # below 1 ms counts as 1 ms
        (0.5, "0"),
        (1, "0"),
        (1.09, "0"),  # 2^(1/8) = 1.0905: the first bucket ends there
        (1.091, "1"),
        (2, "8"),  # one octave is eight buckets
        (1000, "79"),  # log2(1000) * 8 = 79.73
        (1024, "80"),
        (3_600_000, "174"),  # one hour: log2(3.6e6) * 8 = 174.24
    ],
)
def test_bucket_is_floor_of_log2_times_eight(ms: float, key: str) -> None:
    assert histogram.bucket(ms) == key


def test_bucket_value_is_inside_its_bucket_and_close_to_every_member() -> None:
    rng = random.Random(7)
    for _ in range(2_000):
        ms = rng.uniform(1, 10_000_000)
        b = int(histogram.bucket(ms))
        middle = histogram.bucket_value(b)
        assert 2 ** (b / 8) <= middle < 2 ** ((b + 1) / 8)
        assert abs(middle - ms) / ms < 0.045


def test_add_counts_per_bucket() -> None:
    hist = of([100, 100, 101, 5_000])
    assert hist == {histogram.bucket(100): 3, histogram.bucket(5_000): 1}


def test_merge_adds_counts() -> None:
    a = {"8": 2, "16": 1}
    b = {"16": 4, "30": 5}
    histogram.merge(a, b)
    assert a == {"8": 2, "16": 5, "30": 5}
    assert b == {"16": 4, "30": 5}


def test_merging_partials_equals_the_whole() -> None:
    rng = random.Random(11)
    values = [rng.lognormvariate(5, 1.5) for _ in range(3_000)]
    merged: Histogram = {}
    for part in (values[:1000], values[1000:1700], values[1700:]):
        histogram.merge(merged, of(part))
    assert merged == of(values)
    assert Counter(merged) == Counter(of(values[:1500])) + Counter(of(values[1500:]))


@pytest.mark.parametrize("q", [0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999])
def test_quantile_within_5_percent_of_exact_on_lognormal(q: float) -> None:
    rng = random.Random(2026)
    values = [rng.lognormvariate(math.log(250), 1.0) for _ in range(10_000)]
    estimate = histogram.quantile(of(values), q)
    exact = exact_percentile(values, q)
    assert estimate is not None
    assert abs(estimate - exact) / exact < 0.05, (estimate, exact)


def test_quantile_of_merged_shards_matches_the_whole() -> None:
    rng = random.Random(3)
    shards: list[list[float]] = [[] for _ in range(4)]
    for i in range(10_000):
        shards[i % 4].append(rng.lognormvariate(8, 0.7))
    merged: Histogram = {}
    for values in shards:
        histogram.merge(merged, of(values))
    everything = [v for values in shards for v in values]
    for q in (0.5, 0.95, 0.99):
        estimate = histogram.quantile(merged, q)
        exact = exact_percentile(everything, q)
        assert estimate is not None
        assert abs(estimate - exact) / exact < 0.05


def test_quantile_extremes_are_the_first_and_last_buckets() -> None:
    hist = of([10, 20, 30_000])
    assert histogram.quantile(hist, 0.0) == histogram.bucket_value(int(histogram.bucket(10)))
    assert histogram.quantile(hist, 1.0) == histogram.bucket_value(int(histogram.bucket(30_000)))


def test_quantile_of_empty_is_none() -> None:
    assert histogram.quantile({}, 0.5) is None
    assert histogram.quantile({"12": 0}, 0.5) is None
