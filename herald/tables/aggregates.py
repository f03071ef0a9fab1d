"""Window aggregates: the counters and histograms of SPEC §6, and how one event changes them.

An aggregate is a plain list (cheap to create, update and serialise on the hot path):
13 counters in COUNTERS order, the delivery-latency and time-to-read histograms, then the
distinct recipients first delivered and first read in the window (tables/reach.py) and, for
a broadcast's windows, the same per channel.
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
# Appended after the histograms: an aggregate stored before reach existed is a prefix.
RECIPIENTS = {"delivered": TIME_TO_READ + 1, "read": TIME_TO_READ + 2,
              "responded": TIME_TO_READ + 5}  # fmt: skip
BY_CHANNEL = {"delivered": TIME_TO_READ + 3, "read": TIME_TO_READ + 4}

Aggregate = list[Any]


def new() -> Aggregate:
    return [0] * len(COUNTERS) + [{}, {}, 0, 0, {}, {}, 0]


def upgrade(agg: Aggregate) -> Aggregate:
    """An aggregate as stored by an earlier version, completed to today's layout."""
    if len(agg) <= RECIPIENTS["responded"]:
        agg.extend(new()[len(agg) :])
    return agg


def add_recipient(agg: Aggregate, kind: str, channel: str | None, first: bool) -> None:
    """A user reached (delivered or read) on `channel` for the first time; `first`: on any
    channel. `channel` None: an aggregate that already is per channel (a region's)."""
    if first:
        agg[RECIPIENTS[kind]] += 1
    if channel is not None and kind in BY_CHANNEL:
        counts = agg[BY_CHANNEL[kind]]
        counts[channel] = counts.get(channel, 0) + 1


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


def to_row(agg: Aggregate, by_channel: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = dict(zip(COUNTERS, agg, strict=False))
    row["delivery_latency_hist"] = agg[LATENCY]
    row["time_to_read_hist"] = agg[TIME_TO_READ]
    for kind, index in RECIPIENTS.items():
        row[f"recipients_{kind}"] = agg[index]
    if by_channel:
        for kind, index in BY_CHANNEL.items():
            row[f"channel_recipients_{kind}"] = agg[index]
    return row
