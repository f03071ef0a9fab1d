"""`herald bench --search`: `herald search` over millions of raw events, index against full scan.

events_raw in a fresh chDB directory (the real migrations, so the real index) is filled by one
INSERT ... SELECT from numbers(): broadcasts of five tenants with their lifecycle events
(titles and payload as producers write them) and a few hundred deliveries and acks each, with
UUID event ids, as the pipeline stores them. Then the same search runs with the skip index
and with `use_skip_indexes = 0` (a full scan), for a word in a few titles and a word in none.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clickhouse_connect.driver import Client

from herald.processes.search import SearchRequest, search_sql
from herald.sinks import clickhouse, migrations

Progress = Callable[[str], None]
EVENTS_PER_BROADCAST = 400
LIFECYCLE = ("created", "scheduled", "sent")
RARE_WORD = "aurora"  # in the titles of one broadcast in RARE_EVERY
RARE_EVERY = 5_000
MISSING_WORD = "xylophone"
RUNS = 5
# The query condition cache remembers which granules a filter rejected: the second full scan
# would skip them as the index does. Each run must do the work of a first search.
_UNCACHED = {"use_query_condition_cache": 0}
_WORDS = ("maintenance", "release", "outage", "survey", "welcome", "invoice", "security",
          "update", "reminder", "webinar", "offer", "weekly", "digest", "holiday", "policy")


def fill_sql(rows: int) -> str:
    """`rows` raw events: broadcast b = number / EVENTS_PER_BROADCAST, its events k < 3 the
    lifecycle (titles with RARE_WORD in one broadcast in RARE_EVERY)."""
    return f"""
INSERT INTO events_raw (tenant_id, event_id, topic, type, broadcast_id, occurred_at, user_id,
    channel, region, attempt, error_code, latency_ms, action_id, payload)
SELECT
    ['acme', 'globex', 'initech', 'umbrella', 'hooli'][b % 5 + 1] AS tenant_id,
    toString(generateUUIDv4(number)) AS event_id,
    if(k < 3, 'broadcasts', if(k % 4 = 0, 'acks', 'deliveries')) AS topic,
    if(k < 3, {list(LIFECYCLE)}[k + 1],
       if(k % 4 = 0, ['received', 'read', 'clicked'][k % 3 + 1],
          ['queued', 'attempted', 'delivered', 'delivered', 'failed'][k % 5 + 1])) AS type,
    concat('b-', leftPad(lower(hex(cityHash64(b) % 281474976710656)), 12, '0')) AS broadcast_id,
    fromUnixTimestamp64Milli(toInt64(1764000000000 + b * 60000 + k * 150), 'UTC') AS occurred_at,
    if(k < 3, '', concat('u', leftPad(toString(cityHash64(b, k) % 100000), 6, '0'))) AS user_id,
    if(k < 3, '', ['push', 'email', 'sms', 'in_app', 'sse'][k % 5 + 1]) AS channel,
    if(k < 3, '', ['DE', 'FR', 'US', 'BR', 'JP'][b % 5 + 1]) AS region,
    if(k < 3, 0, 1) AS attempt,
    if(type = 'failed', 'timeout', '') AS error_code,
    if(type = 'delivered', toFloat64(k * 7 % 900), NULL) AS latency_ms,
    if(type = 'clicked', ['yes', 'no', 'maybe'][k % 3 + 1], '') AS action_id,
    if(k < 3, concat('{{"priority":"normal","channels":["push","email"],"target_count":',
        toString({EVENTS_PER_BROADCAST}), ',"targeting":{{"mode":"all"}},',
        '"content_format":"text","language":"en","title":"',
        if(b % {RARE_EVERY} = 7, 'Aurora', initcap({list(_WORDS)}[b % {len(_WORDS)} + 1])), ' ',
        {list(_WORDS)}[intDiv(b, 15) % {len(_WORDS)} + 1], ' ', toString(b), '"}}'),
       '') AS payload
FROM (SELECT number, intDiv(number, {EVENTS_PER_BROADCAST}) AS b,
             number % {EVENTS_PER_BROADCAST} AS k FROM numbers({rows}))
"""


def run_search_bench(rows: int, progress: Progress) -> dict[str, Any]:
    """Fill `rows` raw events into a fresh chDB directory and time searches there."""
    with tempfile.TemporaryDirectory(prefix="herald-search-bench-") as tmp:
        client = clickhouse.connect(f"chdb://{Path(tmp).resolve()}")
        try:
            return _measure(client, rows, progress)
        finally:
            client.close()


def _measure(client: Client, rows: int, progress: Progress) -> dict[str, Any]:
    migrations.migrate(client)
    progress(f"filling events_raw with {rows:,} raw events")
    started = time.perf_counter()
    client.command(fill_sql(rows))
    result: dict[str, Any] = {"rows": rows, "fill_s": round(time.perf_counter() - started, 1)}
    result["index_bytes"] = _index_bytes(client)
    for label, word in (("hit", RARE_WORD), ("missing", MISSING_WORD)):
        sql = search_sql(SearchRequest(text=word, limit=50))
        result[f"{label}_rows"] = len(client.query(sql).result_rows)
        for mode, skip in (("index", 1), ("scan", 0)):
            progress(f"searching {word!r} ({mode}), {RUNS} runs")
            settings = {**_UNCACHED, "use_skip_indexes": skip}
            result[f"{label}_{mode}_s"] = _median_seconds(client, sql, settings)
    return result


def _median_seconds(client: Client, sql: str, settings: dict[str, Any]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        client.query(sql, settings=settings)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 3)


def _index_bytes(client: Client) -> int:
    return int(client.query(
        "SELECT sum(secondary_indices_compressed_bytes) FROM system.parts"
        " WHERE database = currentDatabase() AND table = 'events_raw' AND active"
    ).result_rows[0][0])  # fmt: skip


def render_search(result: dict[str, Any]) -> str:
    """The figures as a small table: median seconds per search."""
    lines = [
        f"search over {result['rows']:,} raw events (filled in {result['fill_s']} s,"
        f" index {result['index_bytes'] / 2**20:.1f} MiB); median of {RUNS} runs:",
        f"{'':28} {'rows':>6} {'index':>8} {'full scan':>10}",
    ]
    for label, word in (("hit", RARE_WORD), ("missing", MISSING_WORD)):
        lines.append(
            f"{label + ' word ' + repr(word):28} {result[label + '_rows']:>6}"
            f" {result[label + '_index_s']:>7.3f}s {result[label + '_scan_s']:>9.3f}s"
        )
    return "\n".join(lines)
