"""Event-time tumbling windows of one minute and when they close (SPEC §4)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from herald.streams.decode import decode
from herald.tables.windows import WINDOW_MS, closes_at, is_closed, window_start

GRACE_MS = 600_000


@pytest.mark.parametrize(
    ("ts", "start"),
    [
        (0, 0),  # the epoch is a window start
        (1, 0),
        (59_999, 0),
        (60_000, 60_000),  # a minute boundary opens the next window
        (60_001, 60_000),
        (-1, -60_000),  # before the epoch: floor, not truncation towards zero
        (-59_999, -60_000),
        (-60_000, -60_000),
        (-60_001, -120_000),
    ],
)
def test_window_start_floors_to_the_minute(ts: int, start: int) -> None:
    assert window_start(ts) == start


def test_window_start_is_the_utc_minute_of_the_event() -> None:
    """An offset in occurred_at does not shift windows: they are UTC minutes."""
    event = decode(
        "deliveries",
        b'{"schema_version": 1, "type": "queued", "tenant_id": "t", "broadcast_id": "b",'
        b' "event_id": "e", "occurred_at": "2026-11-23T11:30:59.999+01:30",'
        b' "user_id": "u", "channel": "push", "region": "DE"}',
    )
    expected = datetime(2026, 11, 23, 10, 0, tzinfo=UTC).timestamp() * 1000
    assert window_start(event.ts) == expected
    assert event.ts - window_start(event.ts) == 59_999


def test_window_closes_at_its_end_plus_grace() -> None:
    start = 1_795_428_000_000
    assert closes_at(start, GRACE_MS) == start + WINDOW_MS + GRACE_MS
    assert closes_at(start, 0) == start + WINDOW_MS


def test_window_is_closed_from_exactly_end_plus_grace() -> None:
    start = 1_795_428_000_000
    end_plus_grace = start + WINDOW_MS + GRACE_MS
    assert not is_closed(start, end_plus_grace - 1, GRACE_MS)
    assert is_closed(start, end_plus_grace, GRACE_MS)
    assert is_closed(start, end_plus_grace + 1, GRACE_MS)


def test_window_is_open_while_no_watermark_is_known() -> None:
    assert not is_closed(0, None, GRACE_MS)
    assert not is_closed(-120_000, None, 0)


def test_without_grace_a_window_closes_when_the_next_one_starts() -> None:
    assert not is_closed(0, WINDOW_MS - 1, 0)
    assert is_closed(0, WINDOW_MS, 0)
    assert is_closed(-WINDOW_MS, 0, 0)
