"""The ClickHouse side against real embedded ClickHouse (chDB): migrations, insert, views."""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from clickhouse_connect.driver import Client

from herald.errors import HeraldError, ServiceUnavailable
from herald.model.schema import COUNTERS
from herald.sinks.clickhouse import connect, insert
from herald.sinks.migrations import EMBEDDED_SKIP, MIGRATIONS, migrate

T0_S = 1_795_000_000  # a minute boundary, epoch seconds
T0_MS = T0_S * 1000


@pytest.fixture(scope="module")
def first_migration(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, list[str]]]:
    client = connect(f"chdb://{tmp_path_factory.mktemp('clickhouse').resolve()}")
    try:
        yield client, migrate(client)
    finally:
        client.close()


@pytest.fixture
def ch(first_migration: tuple[Client, list[str]]) -> Client:
    return first_migration[0]


def rows_of(ch: Client, sql: str, **parameters: Any) -> list[dict[str, Any]]:
    return list(ch.query(sql, parameters=parameters).named_results())


def one(ch: Client, sql: str, **parameters: Any) -> dict[str, Any]:
    found = rows_of(ch, sql, **parameters)
    assert len(found) == 1, found
    return found[0]


def stats_row(tenant: str, shard: int = 0, window: int = 0, **values: Any) -> dict[str, Any]:
    """A broadcast_stats_1m / region_stats_1m row as the worker emits it (JSON-like)."""
    row: dict[str, Any] = dict.fromkeys(COUNTERS, 0)
    row.update(
        tenant_id=tenant,
        window_start=T0_S + 60 * window,
        shard=shard,
        delivery_latency_hist={},
        time_to_read_hist={},
        is_final=0,
        version=1,
        updated_at=T0_MS + 1,
    )
    row.update(values)
    return row


def test_migrate_applies_every_step_once(
    ch: Client, first_migration: tuple[Client, list[str]]
) -> None:
    assert first_migration[1] == [
        m.label + (EMBEDDED_SKIP if m.server_only else "") for m in MIGRATIONS
    ]
    assert migrate(ch) == []
    ledger = rows_of(ch, "SELECT version, name FROM schema_migrations FINAL ORDER BY version")
    assert [(r["version"], r["name"]) for r in ledger] == [(m.version, m.name) for m in MIGRATIONS]


def test_raw_ttl_follows_setting(ch: Client) -> None:
    def ttl() -> str:
        return one(ch, "SELECT engine_full FROM system.tables WHERE name = 'events_raw'")[
            "engine_full"
        ]

    assert "toIntervalDay(30)" in ttl()
    try:
        assert migrate(ch, raw_ttl_days=7) == ["events_raw TTL 7 days"]
        assert "TTL toDateTime(ingested_at) + toIntervalDay(7)" in ttl()
        assert migrate(ch, raw_ttl_days=7) == []
    finally:
        migrate(ch)
    assert "toIntervalDay(30)" in ttl()


def test_stats_rows_read_back_with_string_map_keys(ch: Client) -> None:
    row = stats_row(
        "t-read",
        broadcast_id="b1",
        delivered=5,
        delivery_latency_hist={"40": 3, "41": 2},
        time_to_read_hist={"90": 1},
        is_final=True,
    )
    assert insert(ch, "broadcast_stats_1m", [row]) == 1
    assert insert(ch, "region_stats_1m", [{**row, "region": "DE", "channel": "push"}]) == 1
    for table in ("broadcast_stats_1m", "region_stats_1m"):
        got = one(
            ch,
            "SELECT *, toUnixTimestamp(window_start) AS ws,"
            " toUnixTimestamp64Milli(updated_at) AS u"
            f" FROM {table} FINAL WHERE tenant_id = 't-read'",
        )
        assert (got["ws"], got["u"], got["delivered"], got["is_final"]) == (T0_S, T0_MS + 1, 5, 1)
        assert got["delivery_latency_hist"] == {40: 3, 41: 2}
        assert got["time_to_read_hist"] == {90: 1}


def test_broadcasts_row_reads_back_with_nulls(ch: Client) -> None:
    insert(
        ch,
        "broadcasts",
        [
            {
                "tenant_id": "t-read",
                "broadcast_id": "b1",
                "status": "sent",
                "priority": "high",
                "channels": ["push", "email"],
                "target_count": 10,
                "targeting_mode": "segment",
                "segment": "beta",
                "content_format": "text",
                "language": "en",
                "ack_deadline_s": 600,
                "created_at": T0_MS,
                "sent_at": T0_MS + 500,
                "title": "Hello",
                "version": 3,
                "updated_at": T0_MS + 600,
            }
        ],
    )
    got = one(
        ch,
        "SELECT *, toUnixTimestamp64Milli(sent_at) AS sent_ms FROM broadcasts FINAL"
        " WHERE tenant_id = 't-read'",
    )
    assert got["channels"] == ["push", "email"]
    assert (got["sent_ms"], got["ack_deadline_s"], got["target_count"]) == (T0_MS + 500, 600, 10)
    assert (got["scheduled_at"], got["completed_at"], got["expires_at"]) == (None, None, None)


def test_event_retry_invalid_and_pipeline_rows_read_back(ch: Client) -> None:
    event = {"event_id": "e1", "type": "delivered", "latency_ms": 12.5}
    insert(
        ch,
        "events_raw",
        [
            {
                **event,
                "tenant_id": "t-read",
                "topic": "deliveries",
                "broadcast_id": "b1",
                "occurred_at": "2026-11-23T10:00:00.123Z",
                "user_id": "u1",
                "channel": "push",
                "region": "DE",
                "attempt": 1,
                "payload": event,
            }
        ],
    )
    insert(
        ch,
        "delivery_retries",
        [
            {
                "kind": "deadletter",
                "retry_id": "r1",
                "tenant_id": "t-read",
                "broadcast_id": "b1",
                "user_id": "u1",
                "channel": "sms",
                "region": "DE",
                "attempt": 3,
                "due_at": None,
                "last_error": "E_TIMEOUT",
                "occurred_at": T0_MS,
                "history": [{"attempt": 1, "error_code": "E_TIMEOUT"}],
                "version": 1,
            }
        ],
    )
    insert(
        ch,
        "invalid_events",
        [
            {
                "source_topic": "acks",
                "source_partition": 2,
                "source_offset": 7,
                "error": "x",
                "raw": "e30=",
            }
        ],
    )
    insert(
        ch, "pipeline_stats_1m", [{"component": "worker:h:1", "window_start": T0_S, "events_in": 9}]
    )

    raw = one(
        ch,
        "SELECT *, toUnixTimestamp64Milli(occurred_at) AS at FROM events_raw FINAL"
        " WHERE tenant_id = 't-read'",
    )
    at_ms = round(datetime(2026, 11, 23, 10, 0, 0, 123_000, tzinfo=UTC).timestamp() * 1000)
    assert (raw["at"], raw["latency_ms"], raw["error_code"]) == (at_ms, 12.5, "")
    assert raw["payload"] == '{"event_id":"e1","type":"delivered","latency_ms":12.5}'
    retry = one(ch, "SELECT * FROM delivery_retries FINAL WHERE tenant_id = 't-read'")
    assert (retry["due_at"], retry["history"]) == (None, '[{"attempt":1,"error_code":"E_TIMEOUT"}]')
    invalid = one(
        ch,
        "SELECT *, received_at > now64(3) - INTERVAL 1 MINUTE AS fresh"
        " FROM invalid_events FINAL WHERE source_topic = 'acks'",
    )
    assert (invalid["tenant_id"], invalid["source_offset"], invalid["fresh"]) == ("", 7, 1)
    stats = one(ch, "SELECT * FROM pipeline_stats_1m FINAL WHERE component = 'worker:h:1'")
    assert (stats["tenant_id"], stats["events_in"], stats["consumer_lag"]) == ("", 9, 0)


def test_rows_without_a_defaulted_column_get_the_server_default(ch: Client) -> None:
    insert(
        ch,
        "broadcasts",
        [
            {"tenant_id": "t-dflt", "broadcast_id": "given", "version": 1, "updated_at": T0_MS},
            {"tenant_id": "t-dflt", "broadcast_id": "missing", "version": 1},
        ],
    )
    got = rows_of(
        ch,
        "SELECT broadcast_id, updated_at > now64(3) - INTERVAL 1 MINUTE AS fresh"
        " FROM broadcasts FINAL WHERE tenant_id = 't-dflt' ORDER BY broadcast_id",
    )
    assert [(r["broadcast_id"], r["fresh"]) for r in got] == [("given", 0), ("missing", 1)]


def test_replacing_keeps_the_highest_version(ch: Client) -> None:
    def write(version: int, delivered: int) -> None:
        row = stats_row("t-ver", broadcast_id="b", delivered=delivered, version=version)
        insert(ch, "broadcast_stats_1m", [row])

    write(2, 20)
    write(1, 10)  # a replayed, older snapshot
    write(2, 20)  # a duplicate
    got = one(
        ch, "SELECT delivered, version FROM broadcast_stats_1m FINAL WHERE tenant_id = 't-ver'"
    )
    assert got == {"delivered": 20, "version": 2}
    assert one(ch, "SELECT delivered FROM broadcast_summary WHERE tenant_id = 't-ver'") == {
        "delivered": 20
    }


def test_summaries_sum_partials_over_shards_and_windows(ch: Client) -> None:
    tenant = "t-shards"
    # Reach: 7 distinct users delivered (of the 10 user x channel deliveries), 3 read.
    partials = [
        stats_row(tenant, shard=0, window=0, delivered=3, failed=1, read=2, queued=4,
                  recipients_delivered=2, recipients_read=2),
        stats_row(tenant, shard=1, window=0, delivered=5, failed=1, expired=2, queued=6,
                  recipients_delivered=4),
        stats_row(tenant, shard=1, window=1, delivered=2, read=1, queued=2,
                  recipients_delivered=1, recipients_read=1),
    ]  # fmt: skip
    insert(ch, "broadcast_stats_1m", [{**p, "broadcast_id": "b"} for p in partials])
    insert(ch, "region_stats_1m", [{**p, "region": "eu-west", "channel": "sse"} for p in partials])
    insert(ch, "broadcasts", [{"tenant_id": tenant, "broadcast_id": "b", "target_count": 20}])

    b = one(ch, "SELECT * FROM broadcast_summary WHERE tenant_id = {t:String}", t=tenant)
    r = one(ch, "SELECT * FROM region_summary WHERE tenant_id = {t:String}", t=tenant)
    for summary in (b, r):
        assert (summary["queued"], summary["delivered"], summary["failed"]) == (12, 10, 2)
        assert (summary["recipients_delivered"], summary["recipients_read"]) == (7, 3)
        assert summary["failure_rate"] == pytest.approx(2 / 12)
    assert b["delivery_rate"] == pytest.approx(7 / 20)  # users reached / users targeted
    assert b["read_rate"] == pytest.approx(3 / 7)
    assert r["delivery_rate"] == pytest.approx(10 / (10 + 2 + 2))  # a region has no target
    assert r["read_rate"] == pytest.approx(3 / 10)
    assert (r["region"], r["channel"]) == ("eu-west", "sse")


def test_rates_and_percentiles_are_null_when_undefined(ch: Client) -> None:
    tenant = "t-null"
    insert(
        ch, "broadcasts", [{"tenant_id": tenant, "broadcast_id": "no-stats", "status": "created"}]
    )
    insert(ch, "broadcast_stats_1m", [stats_row(tenant, broadcast_id="no-meta", queued=1)])
    insert(ch, "region_stats_1m", [stats_row(tenant, region="DE", channel="sms", queued=1)])

    got = rows_of(
        ch,
        "SELECT * FROM broadcast_summary WHERE tenant_id = {t:String} ORDER BY broadcast_id",
        t=tenant,
    )
    assert [(g["broadcast_id"], g["status"], g["queued"]) for g in got] == [
        ("no-meta", "", 1),
        ("no-stats", "created", 0),
    ]
    region = one(ch, "SELECT * FROM region_summary WHERE tenant_id = {t:String}", t=tenant)
    nullable = ["delivery_rate", "read_rate", "failure_rate", "delivery_latency_p50_ms"]
    nullable += ["delivery_latency_p95_ms", "delivery_latency_p99_ms", "time_to_read_p50_s"]
    for row in [*got, region]:
        assert {c: row[c] for c in nullable} == dict.fromkeys(nullable)


def hist_bucket(ms: float) -> int:
    """The contract's bucket (SPEC: floor(log2(max(ms, 1)) * 8)), restated as the oracle."""
    return math.floor(math.log2(max(ms, 1.0)) * 8)


def exact_percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def test_percentiles_from_histograms_are_within_5_percent(ch: Client) -> None:
    rng = random.Random(7)
    latencies = [rng.lognormvariate(math.log(120), 0.9) for _ in range(10_000)]
    reads = [rng.lognormvariate(math.log(45_000), 1.2) for _ in range(10_000)]
    # Spread the samples over 4 shards x 5 windows, as partial rows of both tables.
    rows = []
    for part in range(20):
        latency_hist = Counter(hist_bucket(ms) for ms in latencies[part::20])
        read_hist = Counter(hist_bucket(ms) for ms in reads[part::20])
        rows.append(
            stats_row(
                "t-pct",
                shard=part % 4,
                window=part // 4,
                delivery_latency_hist={str(b): n for b, n in latency_hist.items()},
                time_to_read_hist={str(b): n for b, n in read_hist.items()},
            )
        )
    insert(ch, "broadcast_stats_1m", [{**r, "broadcast_id": "b"} for r in rows])
    insert(ch, "region_stats_1m", [{**r, "region": "DE", "channel": "push"} for r in rows])

    b = one(ch, "SELECT * FROM broadcast_summary WHERE tenant_id = 't-pct'")
    r = one(ch, "SELECT * FROM region_summary WHERE tenant_id = 't-pct'")
    for summary in (b, r):
        for q, column in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            exact = exact_percentile(latencies, q)
            assert summary[f"delivery_latency_{column}_ms"] == pytest.approx(exact, rel=0.05)
        for q, column in ((0.5, "p50"), (0.95, "p95")):
            exact = exact_percentile(reads, q) / 1000
            assert summary[f"time_to_read_{column}_s"] == pytest.approx(exact, rel=0.05)


def test_open_escalations_show_the_latest_unresolved_transition(ch: Client) -> None:
    def transition(escalation: str, state: str, level: int, minute: int) -> dict[str, Any]:
        return {
            "escalation_id": escalation,
            "tenant_id": "t-esc",
            "rule": "region_failure_rate",
            "subject": "t-esc/DE/push",
            "level": level,
            "state": state,
            "value": 0.3,
            "threshold": 0.2,
            "opened_at": T0_MS,
            "occurred_at": T0_MS + minute * 60_000,
            "message": f"{state} {level}",
            "version": minute + 1,
        }

    escalated = [transition("e-open", "open", 1, 0), transition("e-open", "escalate", 2, 15)]
    resolved = [transition("e-done", "open", 1, 0), transition("e-done", "resolve", 1, 5)]
    insert(ch, "escalations", escalated + resolved)
    insert(ch, "escalations", escalated[:1])  # a replayed transition

    got = rows_of(ch, "SELECT * FROM open_escalations WHERE tenant_id = 't-esc'")
    assert [(g["escalation_id"], g["state"], g["level"]) for g in got] == [
        ("e-open", "escalate", 2)
    ]
    count = one(ch, "SELECT count() AS n FROM escalations FINAL WHERE tenant_id = 't-esc'")
    assert count == {"n": 4}


def test_unknown_table_names_the_fix(ch: Client) -> None:
    with pytest.raises(HeraldError, match="herald db migrate"):
        insert(ch, "no_such_table", [{"a": 1}])


def test_unreachable_server_fails_fast_in_one_line() -> None:
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as raised:
        connect("http://herald:s3cret@127.0.0.1:1/herald")
    message = str(raised.value)
    assert time.monotonic() - started < 5
    assert "127.0.0.1:1" in message
    assert "\n" not in message
    assert "s3cret" not in message


def test_relative_chdb_path_is_refused() -> None:
    with pytest.raises(HeraldError, match="absolute path"):
        connect("chdb://data/clickhouse")
