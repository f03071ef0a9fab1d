"""Event-time tumbling windows of one minute, and the lateness rule (SPEC §4)."""

from __future__ import annotations

WINDOW_MS = 60_000


def window_start(ts_ms: int) -> int:
    """The window an event belongs to: its event time floored to the minute (UTC), in ms."""
    return ts_ms - ts_ms % WINDOW_MS


def closes_at(start_ms: int, grace_ms: int) -> int:
    """The watermark at which a window is final: its end plus the grace period."""
    return start_ms + WINDOW_MS + grace_ms


def is_closed(start_ms: int, watermark_ms: int | None, grace_ms: int) -> bool:
    """True once the table watermark has passed the window's end plus grace."""
    return watermark_ms is not None and watermark_ms >= closes_at(start_ms, grace_ms)
