"""Which event ids a shard remembers: generations of event time, expired by one range delete.

An event id is counted once per (tenant, event_id) whatever its `occurred_at` (SPEC §4), so the
key of a seen id cannot contain the event's own time. It carries instead the *generation* the
shard was in when it first saw the id: the table watermark divided by the dedup horizon. Two
generations are live, the current one and the one before; a lookup asks both in one multi-get,
and when the watermark enters a new generation, everything older than the one before it goes
in one RocksDB range delete (no scan, however many ids). An id is thus remembered for at least
the horizon of event time after it was first seen, and at most twice that.

Keys: d<generation, 8 hex digits><tenant>\\0<event id>; the live generations are shard meta.
"""

from __future__ import annotations

GENERATIONS = b"mdedup_generations"


def identity(tenant_id: str, event_id: str) -> bytes:
    return f"{tenant_id}\x00{event_id}".encode()


def prefix(generation: int) -> bytes:
    return b"d%08x" % generation


class Generations:
    """The live dedup generations of one shard, oldest first (at most two)."""

    def __init__(self, horizon_ms: int, live: list[int] | None = None) -> None:
        if horizon_ms <= 0:
            raise ValueError("the dedup horizon must be positive")
        self.horizon_ms = horizon_ms
        self.live: list[int] = list(live or [])

    def roll(self, clock_ms: int) -> bytes | None:
        """Enter the generation of `clock_ms` (event time); the key below which ids expired."""
        generation = clock_ms // self.horizon_ms
        if not self.live:
            self.live = [generation]
            return None
        if generation <= self.live[-1]:
            return None
        self.live = [self.live[-1], generation]
        return prefix(self.live[0])

    def prefixes(self) -> list[bytes]:
        """Where a seen id may be, newest first."""
        return [prefix(g) for g in reversed(self.live)]

    def current(self) -> bytes:
        """Where a newly seen id goes."""
        return prefix(self.live[-1])
