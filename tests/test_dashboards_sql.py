"""Every panel, variable and annotation query of every dashboard, run against real ClickHouse.

Each query is expanded as Grafana and the ClickHouse plugin expand it (herald.dashboards.macros)
with the template variables at All, at a multi-value selection and at a single value, then run
on chDB holding data in Herald's schema. It must return rows, and the columns its panel type
needs (herald.dashboards.model documents the conventions).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest
from clickhouse_connect.driver import Client

from herald.dashboards.boards import DASHBOARDS
from herald.dashboards.macros import ALL, expand
from herald.dashboards.model import Dashboard, Panel
from herald.dashboards.runner import (
    Chooser,
    Frame,
    choose_all,
    data_time_range,
    resolve_variables,
    run_sql,
)
from herald.model.schema import COUNTERS
from tests.conftest import PIPELINE_QUOTAS


@pytest.fixture(scope="module")
def dashboard_client(pipeline_clickhouse: Client) -> Client:
    """ClickHouse filled by the real pipeline from a simulated hour (tests/conftest.py)."""
    return pipeline_clickhouse


MODES = ("all", "multi", "single")
# Selections tried per mode: the most specific variable slides over its first few values (the
# others keep their first), since one arbitrary value may have no dead letters, say.
TRIES = 5


def choosers(dashboard: Dashboard, mode: str) -> list[Chooser]:
    if mode == "all" or not dashboard.variables:
        return [lambda _name, _options: ALL]
    size = 2 if mode == "multi" else 1
    last = dashboard.variables[-1].name

    def pick(k: int) -> Chooser:
        def choose(name: str, options: Sequence[str]) -> list[str]:
            start = min(k, max(len(options) - size, 0)) if name == last else 0
            return list(options[start : start + size])

        return choose

    return [pick(k) for k in range(TRIES)]


PANELS = [pytest.param(d, p, id=f"{d.uid}/{p.title}") for d in DASHBOARDS for p in d.panels]

_NUMERIC = re.compile(r"^(Nullable\()?(U?Int\d+|Float\d+|Decimal.*)\)?$")
_TEXT = re.compile(r"^(Nullable\()?(LowCardinality\()?String\)?\)?$")


def _run(client: Client, dashboard: Dashboard, sql: str, mode: str) -> list[Frame]:
    """The query's results under each selection tried for `mode` (all must run)."""
    start, end = data_time_range(client)
    frames = []
    for choose in choosers(dashboard, mode):
        ctx = resolve_variables(client, dashboard, start, end, choose)
        for name, state in ctx.variables.items():
            assert state.options, f"variable {name} has no options"
        frames.append(run_sql(client, expand(sql, ctx)))
    return frames


def _numeric(frame: Frame, skip: Sequence[str] = ()) -> list[str]:
    return [
        c
        for c, t in zip(frame.columns, frame.types, strict=True)
        if c not in skip and _NUMERIC.match(t)
    ]


def _check_shape(panel: Panel, frame: Frame) -> None:
    types = dict(zip(frame.columns, frame.types, strict=True))
    if panel.type == "timeseries":
        assert frame.columns[0] == "time" and types["time"].startswith("DateTime")
        values = _numeric(frame)
        assert values, "a time series needs numeric value columns"
        labels = [c for c in frame.columns[1:] if c not in values]
        assert all(_TEXT.match(types[c]) for c in labels), "series labels must be strings"
    elif panel.type == "stat":
        assert len(frame.rows) == 1
        values = _numeric(frame)
        assert values == frame.columns, "a stat shows numbers only"
        assert any(v is not None for v in frame.rows[0]), "every stat value is NULL"
    elif panel.type in ("barchart", "piechart"):
        assert _TEXT.match(frame.types[0]), "first column is the category"
        assert _numeric(frame, skip=frame.columns[:1]), "bars need numeric columns"
        assert panel.options.get("xField", frame.columns[0]) == frame.columns[0]
    elif panel.type == "geomap":
        assert frame.columns[0] == "region"
        assert all(re.fullmatch(r"[A-Z]{2}", row[0]) for row in frame.rows)
        assert _numeric(frame, skip=["region"])
    else:
        assert panel.type == "table" and frame.columns


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("dashboard", "panel"), PANELS)
def test_panel_query(
    dashboard_client: Client, dashboard: Dashboard, panel: Panel, mode: str
) -> None:
    frames = _run(dashboard_client, dashboard, panel.sql, mode)
    assert any(f.rows for f in frames), f"no rows from:\n{frames[0].sql}"
    for frame in frames:
        if frame.rows:
            _check_shape(panel, frame)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.uid)
def test_annotation_queries(dashboard_client: Client, dashboard: Dashboard, mode: str) -> None:
    for _name, sql in dashboard.annotations:
        frames = _run(dashboard_client, dashboard, sql, mode)
        assert any(f.rows for f in frames)
        for frame in frames:
            assert frame.columns[:2] == ["time", "text"]
            assert frame.types[0].startswith("DateTime")


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.uid)
def test_multi_and_single_selections_narrow_the_variables(
    dashboard_client: Client, dashboard: Dashboard
) -> None:
    """A variable that depends on another (broadcast on tenant) offers fewer values."""
    start, end = data_time_range(dashboard_client)
    everything = resolve_variables(dashboard_client, dashboard, start, end, choose_all)
    one = resolve_variables(
        dashboard_client, dashboard, start, end, choosers(dashboard, "single")[0]
    )
    for name, state in one.variables.items():
        assert set(state.options) <= set(everything.variables[name].options)
    if "broadcast" in one.variables:
        assert len(one.variables["broadcast"].options) < len(
            everything.variables["broadcast"].options
        )


def test_selections_filter_the_numbers(dashboard_client: Client) -> None:
    """All tenants deliver more than one: the tenant filter really reaches the SQL."""
    overview = DASHBOARDS[0]
    delivered = next(p for p in overview.panels if p.title == "Delivered")
    totals = {
        mode: _run(dashboard_client, overview, delivered.sql, mode)[0].rows[0][0] for mode in MODES
    }
    assert totals["all"] > totals["multi"] > totals["single"] > 0


def test_the_quota_table_shows_each_quota_and_its_overage(dashboard_client: Client) -> None:
    """The pipeline's tenants against PIPELINE_QUOTAS (tests/conftest.py): acme's bursts go
    over its quota, globex never does, initech has none; the overage is what the minutes
    held beyond quota x 60, straight from region_stats_1m."""
    pipeline = next(d for d in DASHBOARDS if d.uid == "herald-pipeline")
    panel = next(p for p in pipeline.panels if p.title == "Tenant quotas: usage and overage")
    [frame] = _run(dashboard_client, pipeline, panel.sql, "all")[:1]
    shown = {row[0]: dict(zip(frame.columns, row, strict=True)) for row in frame.rows}
    assert {t: row["quota"] for t, row in shown.items()} == PIPELINE_QUOTAS
    events = " + ".join(c for c in COUNTERS if c not in ("retries_scheduled", "dead_lettered"))
    minutes = dashboard_client.query(
        f"SELECT tenant_id, sum({events}) AS n FROM region_stats_1m FINAL"
        " GROUP BY tenant_id, window_start"
    ).result_rows
    for tenant, quota in PIPELINE_QUOTAS.items():
        over = [n - quota * 60 for t, n in minutes if t == tenant and n > quota * 60]
        assert (shown[tenant]["minutes_over_quota"], shown[tenant]["overage_events"]) == (
            len(over), sum(over))  # fmt: skip
    assert shown["acme"]["overage_events"] > 0 and shown["globex"]["overage_events"] == 0
