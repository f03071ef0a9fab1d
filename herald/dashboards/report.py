"""`herald report`: the dashboards' panels as one self-contained HTML file, for people without
Grafana. The same queries run (through herald.dashboards.runner), over the data's event-time
span; charts are drawn by Chart.js, inlined from herald/dashboards/vendor so the file works
offline.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from herald.dashboards.boards import DASHBOARDS
from herald.dashboards.macros import ALL, QueryContext, expand
from herald.dashboards.model import Dashboard, Panel
from herald.dashboards.runner import Frame, data_time_range, resolve_variables, run_sql

log = logging.getLogger(__name__)

TABLE_ROWS = 200
_CHART_TOKEN = "/*__CHART_JS__*/"
_DATA_TOKEN = "/*__REPORT_DATA__*/"
# How the report draws each Grafana panel type (it has no map: regions become bars).
_RENDER = {
    "timeseries": "timeseries",
    "barchart": "barchart",
    "piechart": "barchart",
    "geomap": "barchart",
    "stat": "stat",
    "table": "table",
}


def render_report(client: Client, path: Path, tenant: str | None = None) -> Path:
    """Run every dashboard panel on `client` and write the HTML report to `path`."""
    start, end = data_time_range(client)
    data = {
        "range": f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC (event time)",
        "tenant": tenant or "all",
        "generated": f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC",
        "dashboards": [_dashboard(client, d, start, end, tenant) for d in DASHBOARDS],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_html(data), encoding="utf-8")
    return path


def _dashboard(
    client: Client, dashboard: Dashboard, start: datetime, end: datetime, tenant: str | None
) -> dict[str, Any]:
    def choose(name: str, _options: Sequence[str]) -> str | list[str]:
        return [tenant] if tenant and name == "tenant" else ALL

    ctx = resolve_variables(client, dashboard, start, end, choose)
    return {
        "uid": dashboard.uid,
        "title": dashboard.title.removeprefix("Herald / "),
        "description": dashboard.description,
        "panels": [_panel(client, panel, ctx) for panel in dashboard.panels],
    }


def _panel(client: Client, panel: Panel, ctx: QueryContext) -> dict[str, Any]:
    out: dict[str, Any] = {
        "title": panel.title,
        "description": panel.description,
        "width": panel.width,
        "unit": panel.unit,
        "render": _RENDER[panel.type],
        "rows": [],
    }
    try:
        frame = run_sql(client, expand(panel.sql, ctx))
    except ClickHouseError as ex:
        # One broken panel should not cost the whole report; it shows the error instead.
        log.warning("report panel %r failed: %s", panel.title, ex)
        out["error"] = f"query failed: {str(ex).splitlines()[0][:200]}"
        return out
    if out["render"] == "timeseries":
        out.update(_series(frame))
    elif out["render"] == "barchart":
        out.update(_bars(frame))
    out.update(columns=frame.columns, rows=frame.rows[:TABLE_ROWS])
    return out


def _is_number(type_name: str) -> bool:
    inner = type_name.removeprefix("Nullable(")
    return inner.startswith(("UInt", "Int", "Float", "Decimal"))


def _series(frame: Frame) -> dict[str, Any]:
    """Long or wide time series to one dataset per (label values, value column), as Grafana."""
    values = [i for i, t in enumerate(frame.types) if i and _is_number(t)]
    labels = [i for i in range(1, len(frame.columns)) if i not in values]
    times = sorted({row[0] for row in frame.rows})
    position = {t: i for i, t in enumerate(times)}
    series: dict[str, list[Any]] = {}
    for row in frame.rows:
        prefix = " ".join(str(row[i]) for i in labels)
        for i in values:
            name = (
                f"{prefix} {frame.columns[i]}".strip() if len(values) > 1 or not prefix else prefix
            )
            series.setdefault(name, [None] * len(times))[position[row[0]]] = row[i]
    return {
        "labels": [f"{t:%m-%d %H:%M}" for t in times],
        "datasets": [{"label": name, "data": data} for name, data in series.items()],
    }


def _bars(frame: Frame) -> dict[str, Any]:
    return {
        "labels": [str(row[0]) for row in frame.rows],
        "datasets": [
            {"label": name, "data": [row[i] for row in frame.rows]}
            for i, name in enumerate(frame.columns)
            if i and _is_number(frame.types[i])
        ],
    }


def _html(data: dict[str, Any]) -> str:
    template = resources.files("herald.dashboards").joinpath("report.html").read_text("utf-8")
    chart_js = (
        resources.files("herald.dashboards").joinpath("vendor/chart.umd.min.js").read_text("utf-8")
    )
    # orjson writes datetimes as ISO 8601 and NaN as null; "</" must not close the <script>.
    payload = orjson.dumps(data, default=str).decode().replace("</", "<\\/")
    before, after = template.split(_CHART_TOKEN)
    head, tail = after.split(_DATA_TOKEN)
    return before + chart_js + head + payload + tail
