"""Tenant quotas in ClickHouse (herald/sinks/migrations/quota.py), on chDB: `migrate` keeps
`tenant_quotas` in step with the config, and `tenant_usage_1m` counts per tenant and minute
the events the tenant_quota rule meters, across shards, regions and replaced snapshots."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from clickhouse_connect.driver import Client

from herald.sinks.clickhouse import insert
from herald.sinks.migrations import migrate
from tests.harness import migrated_chdb
from tests.test_clickhouse import T0_S, rows_of, stats_row

USAGE = """
SELECT tenant_id, toUnixTimestamp(window_start) - {t0:UInt32} AS minute, events, events_per_s,
       quota_per_s, over_quota, overage_events, is_final
FROM tenant_usage_1m ORDER BY tenant_id, minute"""


@pytest.fixture
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with migrated_chdb(tmp_path_factory.mktemp("quotas")) as client:
        yield client


def quotas(ch: Client) -> dict[str, Any]:
    return {r["tenant_id"]: r["quota_per_s"]
            for r in rows_of(ch, "SELECT * FROM tenant_quotas FINAL")}  # fmt: skip


def test_migrate_keeps_the_quotas_in_step_with_the_config(ch: Client) -> None:
    assert migrate(ch, quotas={"acme": 5000, "globex": 2.5}) == [
        "tenant_quotas: acme 5000 events/s", "tenant_quotas: globex 2.5 events/s"]  # fmt: skip
    assert migrate(ch, quotas={"acme": 5000, "globex": 2.5}) == []
    assert migrate(ch) == []  # no config given (tests, the search bench): left as it is
    assert migrate(ch, quotas={"acme": 6000, "initech": 1}) == [
        "tenant_quotas: acme 6000 events/s", "tenant_quotas: globex no quota",
        "tenant_quotas: initech 1 events/s"]  # fmt: skip
    assert quotas(ch) == {"acme": 6000, "globex": None, "initech": 1}
    assert migrate(ch, quotas={}) == ["tenant_quotas: acme no quota",
                                      "tenant_quotas: initech no quota"]  # fmt: skip
    assert migrate(ch, quotas={"globex": 3}) == ["tenant_quotas: globex 3 events/s"]
    assert quotas(ch) == {"acme": None, "globex": 3, "initech": None}


def test_usage_counts_the_metered_events_against_the_quota(ch: Client) -> None:
    """Every delivery and ack counter, summed over regions, channels and shards (not the
    retries and dead letters they imply); a replaced snapshot counts once, at its newest."""
    migrate(ch, quotas={"heavy": 2, "light": 10})
    rows = [
        # heavy, minute 0: 150 events over two shards and two regions (2.5/s, quota 2/s).
        stats_row("heavy", 0, 0, region="DE", channel="push", queued=40, delivered=30,
                  failed=10, retries_scheduled=10, version=2),
        stats_row("heavy", 1, 0, region="FR", channel="sms", received=30, read=20, clicked=5,
                  dismissed=5, responded=10, version=1, is_final=1),
        # heavy, minute 1: under quota (60 events, 1/s).
        stats_row("heavy", 0, 1, region="DE", channel="push", attempted=30, pending=20,
                  expired=10, version=3),
        stats_row("light", 0, 0, region="DE", channel="push", delivered=120, version=1),
        stats_row("none", 0, 0, region="DE", channel="push", delivered=600, version=1),
    ]  # fmt: skip
    insert(ch, "region_stats_1m", rows)
    stale = stats_row("heavy", 0, 0, region="DE", channel="push", queued=40, delivered=30,
                      failed=5, dead_lettered=5, version=1)  # fmt: skip
    insert(ch, "region_stats_1m", [stale])  # in a block of its own: only FINAL hides it
    assert rows_of(ch, USAGE, t0=T0_S) == [
        {"tenant_id": "heavy", "minute": 0, "events": 150, "events_per_s": 2.5,
         "quota_per_s": 2.0, "over_quota": True, "overage_events": 30.0, "is_final": 0},
        {"tenant_id": "heavy", "minute": 60, "events": 60, "events_per_s": 1.0,
         "quota_per_s": 2.0, "over_quota": False, "overage_events": 0.0, "is_final": 0},
        {"tenant_id": "light", "minute": 0, "events": 120, "events_per_s": 2.0,
         "quota_per_s": 10.0, "over_quota": False, "overage_events": 0.0, "is_final": 0},
        {"tenant_id": "none", "minute": 0, "events": 600, "events_per_s": 10.0,
         "quota_per_s": None, "over_quota": False, "overage_events": 0.0, "is_final": 0},
    ]  # fmt: skip
    migrate(ch, quotas={"light": 10})  # heavy's quota dropped: no quota, nothing over it
    over = rows_of(ch, "SELECT tenant_id, quota_per_s, over_quota FROM tenant_usage_1m"
                       " WHERE tenant_id = 'heavy'")  # fmt: skip
    assert over == [{"tenant_id": "heavy", "quota_per_s": None, "over_quota": False}] * 2
