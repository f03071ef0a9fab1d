"""Realistic rows for the dashboard and report tests, written with the sink's own `insert`.

`fill_sample_data` writes an hour of traffic for three tenants into every table the dashboards
read, the way the pipeline writes it: one partial row per aggregation shard, snapshots that
replace older versions (a stale version is inserted too, so a query without FINAL is caught).
The tests below pin the totals the dashboards must show.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver import Client

from herald.model.schema import COUNTERS
from herald.sinks.clickhouse import connect, insert
from herald.sinks.migrations import migrate
from herald.tables.histogram import bucket as hist_bucket

BASE = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
MINUTES = 60
TENANTS = ("acme", "globex", "initech")
REGIONS = ("DE", "FR", "US", "BR", "eu-west")
CHANNELS = ("push", "email", "sms", "in_app", "sse")
SHARDS = (0, 1)
ERRORS = ("timeout", "invalid_token", "bounced")


def open_filled_chdb(path: Path) -> tuple[Client, Counter[str]]:
    """A chDB client on `path` with the schema and the sample data; the expected totals."""
    client = connect(f"chdb://{path.resolve()}")
    migrate(client)
    return client, fill_sample_data(client)


def fill_sample_data(client: Client, seed: int = 5) -> Counter[str]:
    """Insert the sample hour; returns the counters summed over everything (for assertions)."""
    rng = random.Random(seed)
    region_rows, totals = _region_stats(rng)
    insert(client, "region_stats_1m", region_rows)
    # A stale snapshot of an existing key: FINAL must hide it.
    insert(client, "region_stats_1m", [{**region_rows[0], "delivered": 10**9, "version": 0}])
    broadcasts = _broadcasts(rng)
    insert(client, "broadcasts", broadcasts)
    insert(client, "broadcast_stats_1m", _broadcast_stats(rng, broadcasts))
    insert(client, "events_raw", _events_raw(rng, broadcasts))
    insert(client, "delivery_retries", _retries(rng, broadcasts))
    insert(client, "escalations", _escalations())
    insert(client, "invalid_events", _invalid_events())
    insert(client, "pipeline_stats_1m", _pipeline_stats(rng))
    return totals


def _minute(i: int) -> datetime:
    return BASE + timedelta(minutes=i)


def _hist(rng: random.Random, median_ms: float, n: int) -> dict[int, int]:
    hist: Counter[int] = Counter()
    for _ in range(n):
        hist[hist_bucket(rng.lognormvariate(0, 0.6) * median_ms)] += 1
    return dict(hist)


def _counters(rng: random.Random, scale: int) -> dict[str, int]:
    delivered = rng.randint(scale, 3 * scale)
    failed = rng.randint(0, scale // 3)
    read = rng.randint(0, delivered)
    return {
        "queued": delivered + failed,
        "attempted": delivered + failed,
        "delivered": delivered,
        "failed": failed,
        "pending": rng.randint(0, scale // 4),
        "expired": rng.randint(0, 2),
        "received": delivered,
        "read": read,
        "clicked": rng.randint(0, read // 3 + 1),
        "dismissed": rng.randint(0, 3),
        "responded": rng.randint(0, read // 4 + 1),
        "retries_scheduled": failed // 2,
        "dead_lettered": failed - failed // 2,
    }


def _region_stats(rng: random.Random) -> tuple[list[dict[str, Any]], Counter[str]]:
    rows, totals = [], Counter[str]()
    for tenant in TENANTS:
        for region in REGIONS:
            for channel in CHANNELS:
                for m in range(MINUTES):
                    for shard in SHARDS:
                        counters = _counters(rng, 4)
                        totals.update(counters)
                        rows.append(
                            {
                                "tenant_id": tenant,
                                "region": region,
                                "channel": channel,
                                "window_start": _minute(m),
                                "shard": shard,
                                **counters,
                                "delivery_latency_hist": _hist(rng, 300, counters["delivered"]),
                                "time_to_read_hist": _hist(rng, 90_000, counters["read"]),
                                "is_final": 1,
                                "version": 1,
                            }
                        )
    return rows, totals


def _broadcasts(rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for tenant in TENANTS:
        for n in range(3):
            sent = _minute(5 + 15 * n)
            rows.append(
                {
                    "tenant_id": tenant,
                    "broadcast_id": f"{tenant}-b{n}",
                    "status": "completed" if n < 2 else "sent",
                    "priority": ("normal", "high", "critical")[n],
                    "channels": list(rng.sample(CHANNELS, 2)),
                    "target_count": 2000,
                    "targeting_mode": "all",
                    "content_format": "interactive" if n == 1 else "text",
                    "language": "en",
                    "ack_deadline_s": 900 if n else None,
                    "created_at": sent - timedelta(minutes=2),
                    "sent_at": sent,
                    "completed_at": sent + timedelta(minutes=20) if n < 2 else None,
                    "title": f"Broadcast {n} of {tenant}",
                    "version": 3,
                }
            )
    return rows


def _broadcast_stats(rng: random.Random, broadcasts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for b in broadcasts:
        start = int((b["sent_at"] - BASE).total_seconds() // 60)
        for m in range(start, min(start + 30, MINUTES)):
            for shard in SHARDS:
                counters = _counters(rng, 10)
                rows.append(
                    {
                        "tenant_id": b["tenant_id"],
                        "broadcast_id": b["broadcast_id"],
                        "window_start": _minute(m),
                        "shard": shard,
                        **counters,
                        "delivery_latency_hist": _hist(rng, 300, counters["delivered"]),
                        "time_to_read_hist": _hist(rng, 90_000, counters["read"]),
                        "is_final": 1,
                        "version": 1,
                    }
                )
    return rows


def _events_raw(rng: random.Random, broadcasts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    kinds = [("deliveries", t) for t in ("delivered", "failed", "pending")] + [
        ("acks", t) for t in ("read", "clicked", "responded")
    ]
    for b in broadcasts:
        for i in range(150):
            topic, type_ = rng.choice(kinds)
            occurred = b["sent_at"] + timedelta(seconds=rng.randint(0, 1500))
            rows.append(
                {
                    "tenant_id": b["tenant_id"],
                    "event_id": f"{b['broadcast_id']}-e{i}",
                    "topic": topic,
                    "type": type_,
                    "broadcast_id": b["broadcast_id"],
                    "occurred_at": occurred,
                    "user_id": f"u{rng.randint(0, 500):04d}",
                    "channel": rng.choice(b["channels"]),
                    "region": rng.choice(REGIONS),
                    "attempt": 1,
                    "error_code": "timeout" if type_ == "failed" else "",
                    "latency_ms": rng.uniform(20, 900) if type_ == "delivered" else None,
                    "action_id": rng.choice(("yes", "no", "maybe", "open"))
                    if type_ in ("clicked", "responded")
                    else "",
                    "payload": "{}",
                    "ingested_at": occurred + timedelta(milliseconds=rng.randint(200, 1500)),
                }
            )
    return rows


def _retries(rng: random.Random, broadcasts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for i in range(240):
        b = rng.choice(broadcasts)
        kind = "deadletter" if i % 4 == 0 else "retry"
        attempt = rng.randint(2, 5)
        occurred = b["sent_at"] + timedelta(seconds=rng.randint(0, 1500))
        error = rng.choice(ERRORS)
        history = [
            {
                "attempt": a,
                "occurred_at": (occurred - timedelta(minutes=attempt - a)).isoformat(),
                "error_code": error,
            }
            for a in range(1, attempt + 1)
        ]
        rows.append(
            {
                "kind": kind,
                "retry_id": f"r{i}",
                "tenant_id": b["tenant_id"],
                "broadcast_id": b["broadcast_id"],
                "user_id": f"u{i:04d}",
                "channel": CHANNELS[i % len(CHANNELS)],
                "region": rng.choice(REGIONS),
                "attempt": attempt,
                "due_at": occurred + timedelta(seconds=30) if kind == "retry" else None,
                "last_error": error,
                "occurred_at": occurred,
                "history": json.dumps(history),
                "version": 1,
            }
        )
    return rows


def _escalations() -> list[dict[str, Any]]:
    rows = []
    for n, tenant in enumerate(TENANTS):
        opened = _minute(10 + n)
        transitions = [
            ("critical_unread", f"{tenant}-b1", "open", 1, 0),
            ("critical_unread", f"{tenant}-b1", "escalate", 2, 15),
            ("region_failure_rate", f"{tenant}/BR/sms", "open", 1, 3),
            ("region_failure_rate", f"{tenant}/BR/sms", "resolve", 1, 25),
            ("dead_letter_spike", f"{tenant}/email", "open", 1, 30),
        ]
        for rule, subject, state, level, after in transitions:
            rows.append(
                {
                    "escalation_id": f"{tenant}:{rule}:{subject}",
                    "tenant_id": tenant,
                    "rule": rule,
                    "subject": subject,
                    "level": level,
                    "state": state,
                    "value": 0.42,
                    "threshold": 0.2,
                    "opened_at": opened,
                    "occurred_at": opened + timedelta(minutes=after),
                    "message": f"{rule} on {subject}",
                    "version": after + 1,
                }
            )
    return rows


def _invalid_events() -> list[dict[str, Any]]:
    return [
        {
            "tenant_id": TENANTS[i % 3],
            "source_topic": ("deliveries", "acks", "broadcasts")[i % 3],
            "source_partition": i % 4,
            "source_offset": 1000 + i,
            "error": ("occurred_at: not RFC 3339", "channel: not one of sse, in_app, push")[i % 2],
            "raw": "eyJicm9rZW4iOiB0cnVlfQ==",
            "received_at": _minute(i * 5),
        }
        for i in range(12)
    ]


def _pipeline_stats(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {
            "component": component,
            "window_start": _minute(m),
            "events_in": rng.randint(20_000, 40_000),
            "invalid": rng.randint(0, 5),
            "duplicates": rng.randint(0, 50),
            "late_dropped": rng.randint(0, 2),
            "rows_written": rng.randint(500, 900),
            "consumer_lag": rng.randint(0, 3000),
            "version": 1,
        }
        for component in ("worker:w1:1", "worker:w2:1", "sink:s1:1")
        for m in range(MINUTES)
    ]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, Counter[str]]]:
    client, totals = open_filled_chdb(tmp_path_factory.mktemp("sample") / "clickhouse")
    try:
        yield client, totals
    finally:
        client.close()


def test_sample_totals_through_final_and_views(sample: tuple[Client, Counter[str]]) -> None:
    client, totals = sample
    sums = ", ".join(f"sum({c})" for c in COUNTERS)
    row = client.query(f"SELECT {sums} FROM region_stats_1m FINAL").result_rows[0]
    assert dict(zip(COUNTERS, row, strict=True)) == {c: totals[c] for c in COUNTERS}
    summary = client.query("SELECT sum(delivered) FROM region_summary").result_rows[0][0]
    assert summary == totals["delivered"]


def test_sample_open_escalations(sample: tuple[Client, Counter[str]]) -> None:
    client, _ = sample
    rows = client.query("SELECT rule, level FROM open_escalations ORDER BY rule").result_rows
    assert Counter(rows) == {("critical_unread", 2): 3, ("dead_letter_spike", 1): 3}
