"""Dashboards as plain data: panels, template variables, and their Grafana JSON.

Panel conventions (checked by the tests against real data, relied on by the HTML report):
- `timeseries`: a `time` column (DateTime), numeric value columns, optional string columns
  naming the series (long format: the plugin turns it into one series per label);
- `stat`: one row of numeric columns;
- `barchart` / `piechart`: first column the category (string), then numeric columns;
- `geomap`: a `region` column holding ISO 3166 alpha-2 codes, then numeric columns;
- `table`: any columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DATASOURCE_UID = "herald-clickhouse"
DATASOURCE_TYPE = "grafana-clickhouse-datasource"
DATASOURCE_REF = {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
# Herald's own runtime metrics (herald/telemetry/metrics.py), scraped by Prometheus.
PROMETHEUS_UID = "herald-prometheus"
PROMETHEUS_REF = {"type": "prometheus", "uid": PROMETHEUS_UID}
SCHEMA_VERSION = 41  # Grafana 11.6 / 12.x
GRID_COLUMNS = 24

# Plugin query formats (FACTS.md): 0 time series, 1 table.
_FORMAT_TIMESERIES = 0
_FORMAT_TABLE = 1


@dataclass(frozen=True)
class Panel:
    """`sql` is the panel's query in its dashboard's data source language: ClickHouse SQL,
    or PromQL on a Prometheus dashboard (with `legend`, Grafana's legendFormat)."""

    title: str
    type: str
    sql: str
    width: int = 12
    height: int = 8
    unit: str = "short"
    description: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    decimals: int | None = None
    legend: str = ""


@dataclass(frozen=True)
class Variable:
    """A multi-value query variable with All; `refresh_on_time` re-runs it on range change."""

    name: str
    label: str
    sql: str
    refresh_on_time: bool = False


@dataclass(frozen=True)
class TextBox:
    """A free-text variable: what the user types (`default` until then). Queries read it as
    `${name:sqlstring}`, a quoted SQL string."""

    name: str
    label: str
    default: str = ""


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    variables: tuple[Variable | TextBox, ...]
    panels: tuple[Panel, ...]
    annotations: tuple[tuple[str, str], ...] = ()  # (name, SQL returning time, text)
    datasource: Mapping[str, str] = field(default_factory=lambda: DATASOURCE_REF)

    @property
    def prometheus(self) -> bool:
        return self.datasource == PROMETHEUS_REF

    @property
    def file_name(self) -> str:
        return f"{self.uid}.json"


def target(sql: str, fmt: int, ref_id: str = "A") -> dict[str, Any]:
    """A query as the plugin's own dashboards write it (FACTS.md)."""
    return {
        "datasource": DATASOURCE_REF,
        "editorType": "sql",
        "format": fmt,
        "rawSql": sql,
        "refId": ref_id,
    }


def prometheus_target(panel: Panel) -> dict[str, Any]:
    return {"datasource": PROMETHEUS_REF, "expr": panel.sql, "legendFormat": panel.legend,
            "range": True, "instant": False, "refId": "A"}  # fmt: skip


def to_json(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (what provisioning and /api/dashboards/db take)."""
    return {
        "id": None,
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["herald"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "weekStart": "",
        "liveNow": False,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "links": [
            {
                "type": "dashboards",
                "tags": ["herald"],
                "asDropdown": True,
                "title": "Herald",
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "annotations": {"list": [_builtin_annotation(), *map(_annotation, dashboard.annotations)]},
        "templating": {"list": [_variable(v) for v in dashboard.variables]},
        "panels": [
            _panel(dashboard, panel, panel_id, grid)
            for panel_id, (panel, grid) in enumerate(
                zip(dashboard.panels, layout(dashboard.panels), strict=True), start=1
            )
        ],
    }


def layout(panels: tuple[Panel, ...]) -> list[dict[str, int]]:
    """Place panels left to right, wrapping to a new row below the tallest of the last one."""
    grids = []
    x = y = row_height = 0
    for panel in panels:
        if x + panel.width > GRID_COLUMNS:
            x, y, row_height = 0, y + row_height, 0
        grids.append({"x": x, "y": y, "w": panel.width, "h": panel.height})
        x += panel.width
        row_height = max(row_height, panel.height)
    return grids


def query_format(panel_type: str) -> int:
    return _FORMAT_TIMESERIES if panel_type == "timeseries" else _FORMAT_TABLE


def _panel(dashboard: Dashboard, panel: Panel, panel_id: int, grid: dict[str, int]
           ) -> dict[str, Any]:  # fmt: skip
    defaults: dict[str, Any] = {"unit": panel.unit, **_FIELD_DEFAULTS.get(panel.type, {})}
    if panel.decimals is not None:
        defaults["decimals"] = panel.decimals
    if dashboard.prometheus:
        # Prometheus picks the step from the range and the scrape interval ($__rate_interval).
        queries: dict[str, Any] = {"targets": [prometheus_target(panel)]}
    else:
        # Stats are per minute: a finer interval would split windows and misstate rates.
        queries = {"interval": "1m", "targets": [target(panel.sql, query_format(panel.type))]}
    return {
        "id": panel_id,
        "type": panel.type,
        "title": panel.title,
        "description": panel.description,
        "gridPos": grid,
        "datasource": dashboard.datasource,
        **queries,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {**_OPTION_DEFAULTS.get(panel.type, {}), **panel.options},
    }


def _variable(variable: Variable | TextBox) -> dict[str, Any]:
    if isinstance(variable, TextBox):
        return _text_box(variable)
    return {
        "type": "query",
        "name": variable.name,
        "label": variable.label,
        "datasource": DATASOURCE_REF,
        "query": {"editorType": "sql", "rawSql": variable.sql},
        "definition": variable.sql,
        "multi": True,
        "includeAll": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        # 1: on dashboard load, 2: on time range change
        "refresh": 2 if variable.refresh_on_time else 1,
        "sort": 1,
        "regex": "",
        "hide": 0,
    }


def _text_box(box: TextBox) -> dict[str, Any]:
    value = {"selected": True, "text": box.default, "value": box.default}
    return {
        "type": "textbox",
        "name": box.name,
        "label": box.label,
        "query": box.default,
        "current": value,
        "options": [value],
        "hide": 0,
    }


def _builtin_annotation() -> dict[str, Any]:
    return {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }


def _annotation(name_sql: tuple[str, str]) -> dict[str, Any]:
    name, sql = name_sql
    return {
        "name": name,
        "datasource": DATASOURCE_REF,
        "enable": True,
        "hide": False,
        "iconColor": "red",
        "target": target(sql, _FORMAT_TABLE, ref_id="annotation"),
    }


_LEGEND = {"displayMode": "list", "placement": "bottom", "showLegend": True}

_OPTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "timeseries": {"legend": _LEGEND, "tooltip": {"mode": "multi", "sort": "desc"}},
    "stat": {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": "value_and_name",
    },
    "table": {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
    "barchart": {
        "orientation": "auto",
        "showValue": "auto",
        "stacking": "none",
        "groupWidth": 0.7,
        "barWidth": 0.9,
        "xTickLabelRotation": 0,
        "legend": _LEGEND,
        "tooltip": {"mode": "multi", "sort": "none"},
    },
    "piechart": {
        "pieType": "donut",
        "reduceOptions": {"calcs": [], "fields": "", "values": True},
        "legend": {**_LEGEND, "placement": "right", "values": ["value", "percent"]},
        "tooltip": {"mode": "single", "sort": "none"},
    },
}

_FIELD_DEFAULTS: dict[str, dict[str, Any]] = {
    "timeseries": {
        "custom": {
            "drawStyle": "line",
            "lineWidth": 2,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
        }
    },
    "table": {"custom": {"align": "auto", "filterable": True}},
}
