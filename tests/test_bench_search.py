"""`herald bench --search`: the generated events_raw holds the words where the bench says, and
both searches (index, full scan) find the same rows."""

from __future__ import annotations

import subprocess
import sys

import orjson

from herald.bench.search import EVENTS_PER_BROADCAST, LIFECYCLE, RARE_EVERY


def test_the_rare_word_is_in_the_lifecycle_of_one_broadcast_in_rare_every() -> None:
    rows = RARE_EVERY * EVENTS_PER_BROADCAST // 4  # broadcasts 0 to RARE_EVERY / 4: one has it
    command = [sys.executable, "-m", "herald", "bench", "--json", "--search", str(rows)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    figures = orjson.loads(result.stdout)
    assert figures["rows"] == rows and figures["index_bytes"] > 0
    assert figures["hit_rows"] == len(LIFECYCLE)
    assert figures["missing_rows"] == 0
    assert {"hit_index_s", "hit_scan_s", "missing_index_s", "missing_scan_s"} <= figures.keys()
