"""The macro expander against the plugin's documented and source-level behaviour."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from herald.dashboards.macros import (
    ALL,
    QueryContext,
    VariableState,
    apply_conditional_all,
    expand,
    expand_time_macros,
    interpolate_variables,
)

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
END = datetime(2026, 11, 23, 11, 30, 15, 250000, tzinfo=UTC)
F, T = int(START.timestamp()), int(END.timestamp())
TENANTS = ("acme", "globex", "o'hare")


def ctx(interval_s: float = 60, **current: str | list[str]) -> QueryContext:
    variables = {name: VariableState(value, TENANTS) for name, value in current.items()}
    return QueryContext(START, END, interval_s, variables)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("$__timeFilter(ts)", f"ts >= toDateTime({F}) AND ts <= toDateTime({T})"),
        (
            "$__timeFilter_ms( ts )",
            f"ts >= fromUnixTimestamp64Milli({F}000) AND ts <= fromUnixTimestamp64Milli({T}250)",
        ),
        ("$__dateFilter(d)", "d >= toDate('2026-11-23') AND d <= toDate('2026-11-23')"),
        (
            "$__dt(d, ts)",
            "(d >= toDate('2026-11-23') AND d <= toDate('2026-11-23')) AND "
            f"(ts >= toDateTime({F}) AND ts <= toDateTime({T}))",
        ),
        ("$__fromTime AND $__toTime", f"toDateTime({F}) AND toDateTime({T})"),
        ("$__fromTime_ms", f"fromUnixTimestamp64Milli({F}000)"),
        ("$__timeFrom(ts) AND $__timeTo(ts)", f"ts >= toDateTime({F}) AND ts <= toDateTime({T})"),
        ("$__timeInterval(ts)", "toStartOfInterval(toDateTime(ts), INTERVAL 300 second)"),
        (
            "$__timeInterval_ms(ts)",
            "toStartOfInterval(toDateTime64(ts, 3), INTERVAL 300000 millisecond)",
        ),
        ("x / $__interval_s", "x / 300"),
        ("$__timeGroup(ts, 5m)", "toStartOfInterval(toDateTime(ts), INTERVAL 300 second)"),
        ("$__timeGroup(ts, '1h30m')", "toStartOfInterval(toDateTime(ts), INTERVAL 5400 second)"),
        # nested brackets stay inside one argument
        (
            "$__timeFilter(toDateTime(ts, 'UTC'))",
            f"toDateTime(ts, 'UTC') >= toDateTime({F}) AND toDateTime(ts, 'UTC') <= "
            f"toDateTime({T})",
        ),
        # unknown macros, and macros inside literals and comments, are left alone
        ("$__unknown(x)", "$__unknown(x)"),
        ("'$__fromTime' -- $__toTime", "'$__fromTime' -- $__toTime"),
        # a bracket later in the query is not taken as the arguments of an argument-less macro
        ("t >= $__fromTime GROUP BY f(x)", f"t >= toDateTime({F}) GROUP BY f(x)"),
    ],
)
def test_time_macros(sql: str, expected: str) -> None:
    assert expand_time_macros(sql, ctx(interval_s=300)) == expected


def test_interval_is_at_least_one_second() -> None:
    assert expand_time_macros("$__interval_s", ctx(interval_s=0.2)) == "1"


def test_unclosed_macro_is_an_error() -> None:
    with pytest.raises(ValueError, match="close bracket"):
        expand_time_macros("$__timeFilter(ts", ctx())


def test_wrong_argument_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="expects 1 argument"):
        expand_time_macros("$__timeFilter(a, b)", ctx())


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (ALL, "1=1"),
        ([ALL], "1=1"),
        ([], "1=1"),
        ("", "1=1"),
        (["acme"], "tenant_id IN (${tenant:singlequote})"),
        (["acme", "globex"], "tenant_id IN (${tenant:singlequote})"),
    ],
)
def test_conditional_all(current: str | list[str], expected: str) -> None:
    sql = "$__conditionalAll(tenant_id IN (${tenant:singlequote}), $tenant)"
    assert apply_conditional_all(sql, ctx(tenant=current).variables) == expected


def test_conditional_all_nested_and_repeated() -> None:
    sql = (
        "WHERE $__conditionalAll(a IN (f(x, y)), ${tenant}) "
        "AND $__conditionalAll(b = 1, $region) AND $__conditionalAll(c = 2, $tenant)"
    )
    variables = ctx(tenant=ALL, region=["eu"]).variables
    assert apply_conditional_all(sql, variables) == "WHERE 1=1 AND b = 1 AND 1=1"


def test_conditional_all_with_unknown_variable_keeps_the_condition() -> None:
    assert apply_conditional_all("$__conditionalAll(x = 1, $nope)", {}) == "x = 1"


@pytest.mark.parametrize(
    ("sql", "current", "expected"),
    [
        # the plugin's default format: arrays quoted and joined, single values raw
        ("IN ($tenant)", ["acme", "globex"], "IN ('acme','globex')"),
        ("IN (${tenant})", ALL, "IN ('acme','globex','o'hare')"),
        ("= '$tenant'", "acme", "= 'acme'"),
        ("= '[[tenant]]'", "acme", "= 'acme'"),
        # Grafana's named formats
        ("${tenant:singlequote}", ALL, "'acme','globex','o\\'hare'"),
        ("${tenant:singlequote}", "acme", "'acme'"),
        ("${tenant:sqlstring}", ["o'hare"], "'o''hare'"),
        ("${tenant:csv}", ["acme", "globex"], "acme,globex"),
        ("${tenant:raw}", "acme", "acme"),
        ("${tenant:doublequote}", ["acme"], '"acme"'),
        ("[[tenant:pipe]]", ["acme", "globex"], "acme|globex"),
        # builtins and unknown names are not variables here
        ("$__interval_s $other", ["acme"], "$__interval_s $other"),
    ],
)
def test_variables(sql: str, current: str | list[str], expected: str) -> None:
    assert interpolate_variables(sql, ctx(tenant=current).variables) == expected


def test_unsupported_format_is_an_error() -> None:
    with pytest.raises(ValueError, match="not supported"):
        interpolate_variables("${tenant:percentencode}", ctx(tenant="acme").variables)


def test_full_pipeline_in_plugin_order() -> None:
    sql = (
        "SELECT $__timeInterval(window_start) AS time, count() / $__interval_s AS n "
        "FROM t WHERE $__timeFilter(window_start) "
        "AND $__conditionalAll(tenant_id IN (${tenant:singlequote}), $tenant) GROUP BY time"
    )
    assert expand(sql, ctx(tenant=["acme", "globex"])) == (
        "SELECT toStartOfInterval(toDateTime(window_start), INTERVAL 60 second) AS time, "
        f"count() / 60 AS n FROM t WHERE window_start >= toDateTime({F}) AND "
        f"window_start <= toDateTime({T}) AND tenant_id IN ('acme','globex') GROUP BY time"
    )
    assert "1=1 GROUP BY time" in expand(sql, ctx(tenant=ALL))
