"""Window aggregates: the counters and histograms of SPEC §6, and how one event changes them.

An aggregate is a plain list (cheap to create, update and serialise on the hot path):
13 counters in COUNTERS order, then the delivery-latency and time-to-read histograms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from herald.config import RetryPolicy
from herald.model.schema import COUNTERS
from herald.tables import histogram

if TYPE_CHECKING:
    from herald.model.event import Event

INDEX = {name: i for i, name in enumerate(COUNTERS)}
LATENCY = len(COUNTERS)
TIME_TO_READ = LATENCY + 1
RETRIES = INDEX["retries_scheduled"]
DEAD_LETTERED = INDEX["dead_lettered"]

Aggregate = list[Any]


def new() -> Aggregate:
    return [0] * len(COUNTERS) + [{}, {}]


def retry_outcome(event: Event, policies: dict[str, RetryPolicy]) -> int:
    """A failed delivery is either retried or dead-lettered (SPEC §3): which counter moves."""
    policy = policies.get(event.channel or "")
    if event.retryable and policy is not None and (event.attempt or 1) < policy.max_attempts:
        return RETRIES
    return DEAD_LETTERED


def apply(agg: Aggregate, event: Event, policies: dict[str, RetryPolicy]) -> None:
    """Count one delivery or ack event (deduplicated and on time) into an aggregate."""
    kind = event.type
    agg[INDEX[kind]] += 1
    if kind == "failed":
        agg[retry_outcome(event, policies)] += 1
    elif kind == "delivered" and event.latency_ms is not None:
        histogram.add(agg[LATENCY], event.latency_ms)


def add_time_to_read(agg: Aggregate, ms: float) -> None:
    histogram.add(agg[TIME_TO_READ], ms)


def to_row(agg: Aggregate) -> dict[str, Any]:
    row: dict[str, Any] = dict(zip(COUNTERS, agg, strict=False))
    row["delivery_latency_hist"] = agg[LATENCY]
    row["time_to_read_hist"] = agg[TIME_TO_READ]
    return row
