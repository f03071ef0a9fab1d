"""Pipeline health counters per component and wall-clock minute (table pipeline_stats_1m)."""

from __future__ import annotations

import os
import socket
import time
from collections import defaultdict
from typing import Any

FIELDS = ("events_in", "invalid", "duplicates", "late_dropped", "rows_written", "consumer_lag")


class PipelineStats:
    """Counts since start, per minute; rows are full snapshots, so republishing is harmless."""

    def __init__(self, role: str) -> None:
        self.component = f"{role}:{socket.gethostname()}:{os.getpid()}"
        self._minutes: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIELDS, 0))
        self._changed: set[int] = set()

    def add(self, **counts: int) -> None:
        minute = int(time.time()) // 60 * 60
        bucket = self._minutes[minute]
        for name, n in counts.items():
            bucket[name] += n
        self._changed.add(minute)

    def set_lag(self, lag: int) -> None:
        minute = int(time.time()) // 60 * 60
        self._minutes[minute]["consumer_lag"] = lag
        self._changed.add(minute)

    def take_rows(self) -> list[dict[str, Any]]:
        """Rows for the minutes that changed since the last call; old minutes are forgotten."""
        now_ms = int(time.time() * 1000)
        rows = [
            {"component": self.component, "window_start": minute, **self._minutes[minute],
             "version": time.time_ns(), "updated_at": now_ms}
            for minute in sorted(self._changed)
        ]  # fmt: skip
        self._changed.clear()
        for minute in [m for m in self._minutes if m < now_ms // 1000 - 3600]:
            del self._minutes[minute]
        return rows
