"""Expand a panel's SQL the way Grafana and grafana-clickhouse-datasource (v4.20) do.

Three passes, in the plugin's order:
1. `$__conditionalAll(cond, $var)` (plugin frontend, `applyConditionalAll`): `1=1` when the
   variable is All or empty, else `cond` untouched;
2. template variables (Grafana's templateSrv with the plugin's default format: an array becomes
   `'a','b'` unescaped, a single value goes in raw; `${v:fmt}` uses Grafana's named formats);
3. time macros (plugin backend, `pkg/macros`): `$__timeFilter(c)`, `$__fromTime`, ... .

This lets tests run every dashboard query against real ClickHouse without a Grafana server.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

ALL = "$__all"


@dataclass(frozen=True)
class VariableState:
    """A template variable's current value (`ALL`, one value, or a list) and its options."""

    current: str | Sequence[str]
    options: Sequence[str] = ()

    def is_all(self) -> bool:
        return self._as_js_string() == ALL

    def _as_js_string(self) -> str:
        # JavaScript's Array.prototype.toString, which the plugin applies to `current.value`.
        return self.current if isinstance(self.current, str) else ",".join(self.current)

    def resolved(self) -> str | list[str]:
        """The value Grafana formats: All (no custom allValue) means every option, as a list."""
        if self.is_all():
            return list(self.options)
        return self.current if isinstance(self.current, str) else list(self.current)


@dataclass(frozen=True)
class QueryContext:
    """What Grafana knows when it runs a panel: time range, interval, variables."""

    start: datetime
    end: datetime
    interval_s: float
    variables: Mapping[str, VariableState]


def expand(sql: str, ctx: QueryContext) -> str:
    """The SQL that reaches ClickHouse for `sql` under `ctx`."""
    sql = apply_conditional_all(sql, ctx.variables)
    sql = interpolate_variables(sql, ctx.variables)
    return expand_time_macros(sql, ctx)


# --- 1. $__conditionalAll ---------------------------------------------------------------

_CONDITIONAL_ALL = "$__conditionalAll("
_VAR_IN_ARG = re.compile(r"(?<=\$\{)\w+(?=\})|(?<=\$)\w+")


def apply_conditional_all(sql: str, variables: Mapping[str, VariableState]) -> str:
    """Port of `Datasource.applyConditionalAll`: innermost-last, first textual match replaced."""
    index = sql.rfind(_CONDITIONAL_ALL)
    while index != -1:
        args = _frontend_macro_args(sql, index + len(_CONDITIONAL_ALL) - 1)
        if len(args) != 2:
            return sql
        phrase = args[0]
        match = _VAR_IN_ARG.search(args[1].strip())
        if match:
            state = variables.get(match.group(0))
            if state is not None and state._as_js_string() in ("", ALL):
                phrase = "1=1"
        sql = sql.replace(f"{_CONDITIONAL_ALL}{args[0]},{args[1]})", phrase, 1)
        index = sql.rfind(_CONDITIONAL_ALL)
    return sql


def _frontend_macro_args(sql: str, open_paren: int) -> list[str]:
    """Port of `getMacroArgs`: split on commas at bracket depth 1, untrimmed, quotes ignored."""
    args: list[str] = []
    depth = 0
    start = open_paren + 1
    for i in range(open_paren, len(sql)):
        char = sql[i]
        if char not in "(),":
            continue
        depth += {"(": 1, ")": -1, ",": 0}[char]
        if char == "," and depth == 1:
            args.append(sql[start:i])
            start = i + 1
        if depth == 0:
            args.append(sql[start:i])
            return args
    return []


# --- 2. template variables -------------------------------------------------------------

# Grafana's variable syntaxes: $name, [[name]] / [[name:fmt]], ${name} / ${name:fmt}.
_VARIABLE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}"
)


def _quote_each(quote: str, escaped: str) -> Callable[[str | list[str]], str]:
    def fmt(value: str | list[str]) -> str:
        values = value if isinstance(value, list) else [value]
        return ",".join(f"{quote}{v.replace(quote, escaped)}{quote}" for v in values)

    return fmt


def _joined(sep: str) -> Callable[[str | list[str]], str]:
    return lambda value: sep.join(value) if isinstance(value, list) else value


def _plugin_default(value: str | list[str]) -> str:
    # The plugin's own `format`: arrays quoted and comma-joined without escaping, scalars raw.
    return "'" + "','".join(value) + "'" if isinstance(value, list) else value


_FORMATS: dict[str, Callable[[str | list[str]], str]] = {
    "singlequote": _quote_each("'", "\\'"),
    "doublequote": _quote_each('"', '\\"'),
    "sqlstring": _quote_each("'", "''"),
    "csv": _joined(","),
    "raw": _joined(","),
    "pipe": _joined("|"),
}


def interpolate_variables(sql: str, variables: Mapping[str, VariableState]) -> str:
    """Grafana's `templateSrv.replace`; unknown variables (and `$__…` builtins) stay as they are."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt_name = match.group(3) or match.group(6)
        state = variables.get(name)
        if state is None:
            return match.group(0)
        if fmt_name is None:
            return _plugin_default(state.resolved())
        if fmt_name not in _FORMATS:
            raise ValueError(f"variable format {fmt_name!r} is not supported by the expander")
        return _FORMATS[fmt_name](state.resolved())

    return _VARIABLE.sub(replace, sql)


# --- 3. time macros (backend) ----------------------------------------------------------

_MACRO = re.compile(r"\$__(\w+)")
# Spans the backend leaves alone: string literals, quoted identifiers, comments.
_LITERAL = re.compile(
    r"'(?:\\.|''|[^'\\])*'|\"(?:\\.|[^\"\\])*\"|`[^`]*`|--[^\n]*|/\*.*?\*/", re.DOTALL
)


def expand_time_macros(sql: str, ctx: QueryContext) -> str:
    """Expand the backend macros outside literals and comments; unknown macros stay unchanged."""
    literals = [m.span() for m in _LITERAL.finditer(sql)]
    out: list[str] = []
    pos = 0
    for match in _MACRO.finditer(sql):
        if match.start() < pos or any(lo <= match.start() < hi for lo, hi in literals):
            continue  # in a literal, or inside the arguments of a macro already expanded
        handler = _MACROS.get(match.group(1))
        if handler is None:
            continue
        args, length = _backend_args(sql[match.end() :])
        if length < 0:
            raise ValueError(f"$__{match.group(1)}: missing close bracket")
        out.append(sql[pos : match.start()])
        out.append(handler(ctx, args))
        pos = match.end() + length
    out.append(sql[pos:])
    return "".join(out)


def _backend_args(rest: str) -> tuple[list[str], int]:
    """Port of sqlutil `parseArgs`: a bracketed list right after the name, args trimmed."""
    if not rest.startswith("("):
        return [], 0
    args: list[str] = []
    depth = 0
    current: list[str] = []
    for i, char in enumerate(rest):
        if char == "(":
            depth += 1
            if depth == 1:
                continue
        elif char == ")":
            depth -= 1
            if depth == 0:
                args.append("".join(current).strip())
                return args, i + 1
        elif char == "," and depth == 1:
            args.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    return [], -1


def _seconds(t: datetime) -> int:
    return int(t.timestamp())


def _millis(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _date(t: datetime) -> str:
    return f"toDate('{t.astimezone(UTC):%Y-%m-%d}')"


def _one_arg(name: str, args: list[str]) -> str:
    if len(args) != 1:
        raise ValueError(f"$__{name} expects 1 argument, got {len(args)}")
    return args[0]


def _date_time_filter(ctx: QueryContext, args: list[str]) -> str:
    if len(args) != 2:
        raise ValueError(f"$__dateTimeFilter expects 2 arguments, got {len(args)}")
    date_col, time_col = args
    return (
        f"({date_col} >= {_date(ctx.start)} AND {date_col} <= {_date(ctx.end)}) AND "
        f"({time_col} >= toDateTime({_seconds(ctx.start)}) AND "
        f"{time_col} <= toDateTime({_seconds(ctx.end)}))"
    )


def _interval_seconds(ctx: QueryContext) -> int:
    return int(max(ctx.interval_s, 1))


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def _time_group(_ctx: QueryContext, args: list[str]) -> str:
    if len(args) != 2:
        raise ValueError(f"$__timeGroup expects 2 arguments, got {len(args)}")
    period = args[1].strip().strip("'\"")
    parts = _GO_DURATION.findall(period)
    if not parts or "".join(n + u for n, u in parts) != period:
        raise ValueError(f"$__timeGroup: invalid interval {period!r}")
    seconds = round(sum(float(n) * _UNIT_S[u] for n, u in parts))
    return f"toStartOfInterval(toDateTime({args[0].strip()}), INTERVAL {seconds} second)"


_MACROS: dict[str, Callable[[QueryContext, list[str]], str]] = {
    "fromTime": lambda ctx, _: f"toDateTime({_seconds(ctx.start)})",
    "toTime": lambda ctx, _: f"toDateTime({_seconds(ctx.end)})",
    "fromTime_ms": lambda ctx, _: f"fromUnixTimestamp64Milli({_millis(ctx.start)})",
    "toTime_ms": lambda ctx, _: f"fromUnixTimestamp64Milli({_millis(ctx.end)})",
    "timeFilter": lambda ctx, args: (
        f"{_one_arg('timeFilter', args)} >= toDateTime({_seconds(ctx.start)}) AND "
        f"{args[0]} <= toDateTime({_seconds(ctx.end)})"
    ),
    "timeFilter_ms": lambda ctx, args: (
        f"{_one_arg('timeFilter_ms', args)} >= fromUnixTimestamp64Milli({_millis(ctx.start)})"
        f" AND {args[0]} <= fromUnixTimestamp64Milli({_millis(ctx.end)})"
    ),
    "dateFilter": lambda ctx, args: (
        f"{_one_arg('dateFilter', args)} >= {_date(ctx.start)} AND {args[0]} <= {_date(ctx.end)}"
    ),
    "dateTimeFilter": _date_time_filter,
    "dt": _date_time_filter,
    "timeFrom": lambda ctx, args: (
        f"{_one_arg('timeFrom', args)} >= toDateTime({_seconds(ctx.start)})"
    ),
    "timeTo": lambda ctx, args: f"{_one_arg('timeTo', args)} <= toDateTime({_seconds(ctx.end)})",
    "timeInterval": lambda ctx, args: (
        f"toStartOfInterval(toDateTime({_one_arg('timeInterval', args)}), "
        f"INTERVAL {_interval_seconds(ctx)} second)"
    ),
    "timeInterval_ms": lambda ctx, args: (
        f"toStartOfInterval(toDateTime64({_one_arg('timeInterval_ms', args)}, 3), "
        f"INTERVAL {max(int(ctx.interval_s * 1000), 1)} millisecond)"
    ),
    "interval_s": lambda ctx, _: str(_interval_seconds(ctx)),
    "timeGroup": _time_group,
}
