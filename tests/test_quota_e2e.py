"""Tenant quotas end to end (SPEC §5 `tenant_quota`): a real broker and `herald run` with
quotas in its config file. A tenant over its quota for 5 minutes of event time opens the
escalation, resolves under 80 % of it, opens again; a tenant under its quota and one
without any open nothing; every transition is at the oracle's event time, in
`escalations`, once on `herald.escalations`; the open one is in `open_escalations`.
Nothing of the over-quota tenant is dropped (every table exact against the oracle), and
`tenant_usage_1m` shows its overage minute by minute, as the oracle counts it; /metrics has
the metered events and the quota of each configured tenant."""

from __future__ import annotations

import time
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from herald.config import Escalations
from herald.load.escalations import expected_escalations
from herald.load.totals import expected_totals
from tests.e2e import assert_exact, scrape
from tests.escalation_data import QUOTA_CONFIG, QUOTA_END_S, quota_story
from tests.harness import wait_for
from tests.test_escalations_e2e import all_transitions, deploy, published, transitions

pytestmark = pytest.mark.slow
S = 1000
USAGE = """
SELECT tenant_id, toUnixTimestamp(window_start) AS minute, events, quota_per_s, over_quota,
       overage_events
FROM tenant_usage_1m ORDER BY tenant_id, minute"""
DERIVED = ("retries_scheduled", "dead_lettered")  # counted from failures, not events


def test_over_quota_opens_resolves_and_drops_nothing(broker: str, tmp_path: Path) -> None:
    start = (int(time.time()) // 60 - 120) * 60_000
    messages = quota_story(start)
    config_file = tmp_path / "herald.toml"
    config_file.write_text(QUOTA_CONFIG)
    config = Escalations(**tomllib.loads(QUOTA_CONFIG)["escalations"])
    # Event time stops at the story's end: what the oracle finds after it cannot happen.
    want = [t for t in expected_escalations(messages, config) if t[6] <= start + QUOTA_END_S * S]
    assert [(t[1], t[3], (t[6] - start) // S) for t in want] == [
        ("heavy", "open", 201), ("heavy", "resolve", 691), ("heavy", "open", 1351)]  # fmt: skip
    totals = expected_totals(messages)
    usage: Counter[tuple[str, int]] = Counter()
    for (tenant, _, _, minute), counts in totals.by_region_minute.items():
        usage[(tenant, int(minute.timestamp()))] += sum(
            n for name, n in counts.items() if name not in DERIVED
        )

    herald = deploy(broker, tmp_path / "herald", messages, config_file)
    try:
        assert transitions(all_transitions(herald, len(want))) == want
        assert_exact(herald, totals)  # the over-quota tenant's events included: none dropped
        metered = {tenant: sum(n for (t, _), n in usage.items() if t == tenant)
                   for tenant in ("heavy", "light")}  # fmt: skip
        wait_for(lambda: scrape(herald, "herald_tenant_quota_events_total", "tenant") == metered,
                 30, "the metered events on /metrics")  # fmt: skip
        quotas = scrape(herald, "herald_tenant_quota_events_per_second", "tenant")
        rows = herald.query(USAGE)
        still_open = herald.query("SELECT tenant_id, rule, subject, level, value, threshold"
                                  " FROM open_escalations")  # fmt: skip
        stored = herald.query("SELECT tenant_id, quota_per_s FROM tenant_quotas FINAL"
                              " ORDER BY tenant_id")  # fmt: skip
    finally:
        herald.stop()
    assert published(broker) == sorted(want)  # each once, read_committed
    [(tenant, rule, subject, level, value, threshold)] = [tuple(r.values()) for r in still_open]
    assert (tenant, rule, subject, level, threshold) == ("heavy", "tenant_quota", "heavy", 1, 2)
    assert value > 2
    assert quotas == {"heavy": 2, "light": 2}  # configured tenants only: bounded labels
    assert stored == [{"tenant_id": "heavy", "quota_per_s": 2}, {"tenant_id": "light",
                                                                  "quota_per_s": 2}]  # fmt: skip
    assert {(r["tenant_id"], r["minute"]): r["events"] for r in rows} == usage
    quota = {"heavy": 2, "light": 2}
    for r in rows:
        limit = quota.get(r["tenant_id"])
        assert r["quota_per_s"] == limit
        over = limit is not None and r["events"] > limit * 60
        assert (r["over_quota"], r["overage_events"]) == (
            over, r["events"] - limit * 60 if over else 0)  # fmt: skip
    over_minutes = [(r["minute"] - start // S) // 60 for r in rows if r["over_quota"]]
    assert over_minutes == [*range(8), *range(20, 30)]  # heavy's, and only its
