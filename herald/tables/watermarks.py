"""Per-source-partition watermarks and the table watermark (SPEC §4, as in Flink).

Each source partition's watermark is the highest event time seen on it. A table's watermark is
the minimum over the partitions that feed it, so a fast partition in a replay cannot make a
slow one's events late. A partition marked idle (caught up and quiet for a while) stops holding
the minimum back; if every feeding partition is idle, the highest watermark wins.
"""

from __future__ import annotations

from collections.abc import Iterable


class Watermarks:
    """Source id ("deliveries/3") -> [watermark ms, idle]. Only feeding topics count."""

    def __init__(self, feeding_topics: Iterable[str], state: dict[str, list] | None = None):
        self._feeding = tuple(f"{topic}/" for topic in feeding_topics)
        self.sources: dict[str, list] = state if state is not None else {}

    def observe(self, source: str, watermark_ms: int, idle: bool = False) -> None:
        """Watermarks only move forward: a restarted producer of them may start lower."""
        entry = self.sources.get(source)
        if entry is None:
            self.sources[source] = [watermark_ms, idle]
        else:
            entry[0] = max(entry[0], watermark_ms)
            entry[1] = idle

    def advance(self, source: str, ts_ms: int) -> None:
        """An event from `source` was seen: its partition is active and at least this far."""
        entry = self.sources.get(source)
        if entry is None:
            self.sources[source] = [ts_ms, False]
        else:
            if ts_ms > entry[0]:
                entry[0] = ts_ms
            entry[1] = False

    def all_idle(self) -> bool:
        """Every feeding partition is caught up and quiet: event time may follow the clock."""
        feeding = [e for s, e in self.sources.items() if s.startswith(self._feeding)]
        return bool(feeding) and all(idle for _, idle in feeding)

    def current(self) -> int | None:
        """The table watermark, or None while no feeding partition has reported."""
        feeding = [e for s, e in self.sources.items() if s.startswith(self._feeding)]
        if not feeding:
            return None
        active = [wm for wm, idle in feeding if not idle]
        return min(active) if active else max(wm for wm, _ in feeding)
