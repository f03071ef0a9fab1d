"""Run dashboard queries outside Grafana: variables resolved, macros expanded as the plugin does.

The HTML report and the tests both go through here, so what they show is what Grafana would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_connect.driver import Client

from herald.dashboards.macros import ALL, QueryContext, VariableState, expand
from herald.dashboards.model import Dashboard, TextBox

# Picks a variable's current value from its options: ALL, one value or a list.
Chooser = Callable[[str, Sequence[str]], str | Sequence[str]]


@dataclass(frozen=True)
class Frame:
    """A query result: column names, ClickHouse type names, rows."""

    sql: str
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]


def run_sql(client: Client, sql: str) -> Frame:
    result = client.query(sql)
    types = [t.name for t in result.column_types]
    return Frame(sql, list(result.column_names), types, [tuple(r) for r in result.result_rows])


def data_time_range(client: Client) -> tuple[datetime, datetime]:
    """The event-time span of the stats, padded by a minute each side (now-1h..now if empty),
    and stretched to the newest pipeline-health minute (kept by wall clock) when that is later
    but within a day, as Grafana's "last N hours" would show both.

    Reports and tests use it so replayed data from last month shows as well as live data.
    """
    lo, hi, count = client.query(
        "SELECT min(window_start), max(window_start), count() FROM region_stats_1m"
    ).result_rows[0]
    newest = client.query("SELECT max(window_start) FROM pipeline_stats_1m").result_rows[0][0]
    if count and timedelta(0) < newest - hi < timedelta(days=1):
        hi = newest
    if not count:
        now = datetime.now(UTC).replace(microsecond=0)
        return now - timedelta(hours=1), now
    pad = timedelta(minutes=1)
    return _utc(lo) - pad, _utc(hi) + 2 * pad


def interval_for(start: datetime, end: datetime, points: int = 120) -> int:
    """Grafana's idea of the interval: range / points, at least the 1 m panel minimum."""
    seconds = (end - start).total_seconds() / points
    return max(60, int(seconds // 60 + (seconds % 60 > 0)) * 60)


def resolve_variables(
    client: Client,
    dashboard: Dashboard,
    start: datetime,
    end: datetime,
    choose: Chooser,
) -> QueryContext:
    """Run each variable's query in order (later ones may use earlier ones) and pick values.
    A text box has nothing to choose from: it holds its default, what a user would type."""
    interval = interval_for(start, end)
    states: dict[str, VariableState] = {}
    for variable in dashboard.variables:
        if isinstance(variable, TextBox):
            states[variable.name] = VariableState(variable.default, (variable.default,))
            continue
        ctx = QueryContext(start, end, interval, dict(states))
        options = [str(row[0]) for row in run_sql(client, expand(variable.sql, ctx)).rows]
        states[variable.name] = VariableState(choose(variable.name, options), options)
    return QueryContext(start, end, interval, states)


def choose_all(_name: str, _options: Sequence[str]) -> str:
    return ALL


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
