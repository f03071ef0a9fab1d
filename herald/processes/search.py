"""`herald search TEXT`: past notifications and their events, from events_raw.

What matches is herald.sinks.search's rule (every word, whole, any order, ignoring case; ids
as written). Filters are equalities and a time range; every value from the user goes into
the SQL as an escaped literal or a number.

Tenants: with `tenant`, only that tenant's rows are read (the table's key starts with
tenant_id), and ClickHouse returns no other tenant's (herald.sinks.readers); without it,
results span tenants and each row names its tenant.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from herald.config import Settings
from herald.errors import BadInput, HeraldError
from herald.model.contracts import TYPES
from herald.processes.query import quote, run_query
from herald.sinks.search import matches, search_query

MAX_LIMIT = 10_000
EVENT_TYPES = frozenset(t for types in TYPES.values() for t in types)
# ClickHouse's token characters (tokens(), hasToken): ASCII letters and digits, and any
# non-ASCII byte; a text without one would match every event.
_TOKEN = re.compile(r"[0-9A-Za-z\u0080-\U0010ffff]")
_RELATIVE = re.compile(r"(\d+)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


@dataclass(frozen=True)
class SearchRequest:
    text: str
    tenant: str | None = None
    broadcast: str | None = None
    user: str | None = None
    types: tuple[str, ...] = ()
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int = 50


def search(settings: Settings, request: SearchRequest, as_json: bool) -> str:
    """The matching events, newest first, as a table or JSON lines (one object per event)."""
    sql = search_sql(request)
    if settings.embedded_clickhouse and not Path(settings.dsn.removeprefix("chdb://")).exists():
        # Opening chDB would create an empty database and answer "unknown table".
        raise HeraldError(f"no events stored under {settings.data_path}: start `herald run`,"
                          " or set HERALD_DATA_DIR to where it runs")  # fmt: skip
    answer = run_query(settings, f"{sql} FORMAT JSONEachRow" if as_json else sql, request.tenant)
    # An empty table prints nothing at all: say so (JSON lines stay empty, for scripts).
    return answer or ("" if as_json else "no events match\n")


def search_sql(request: SearchRequest) -> str:
    """The query for `request`."""
    _check(request)
    return search_query([matches(quote(request.text)), *_filters(request)], request.limit)


def _filters(request: SearchRequest) -> list[str]:
    equal = {"tenant_id": request.tenant, "broadcast_id": request.broadcast,
             "user_id": request.user}  # fmt: skip
    where = [f"{column} = {quote(value)}" for column, value in equal.items() if value is not None]
    if request.types:
        where.append(f"type IN ({', '.join(map(quote, request.types))})")
    if request.since_ms is not None:
        where.append(f"occurred_at >= fromUnixTimestamp64Milli({request.since_ms}, 'UTC')")
    if request.until_ms is not None:
        where.append(f"occurred_at < fromUnixTimestamp64Milli({request.until_ms}, 'UTC')")
    return where


def _check(request: SearchRequest) -> None:
    if not _TOKEN.search(request.text):
        raise BadInput(f"nothing to search for in {request.text!r}: give a word or an id")
    unknown = sorted(set(request.types) - EVENT_TYPES)
    if unknown:
        known = ", ".join(sorted(EVENT_TYPES))
        raise BadInput(f"unknown event type {unknown[0]!r}: one of {known}")
    if not 1 <= request.limit <= MAX_LIMIT:
        raise BadInput(f"--limit must be between 1 and {MAX_LIMIT}, not {request.limit}")
    since, until = request.since_ms, request.until_ms
    if since is not None and until is not None and since >= until:
        raise BadInput("--since must be before --until")


def parse_time(value: str, option: str, now_s: float | None = None) -> int:
    """Epoch ms of `value`: RFC 3339 with an offset (`2026-11-23T10:00:00Z`) or a time ago
    (`90s`, `15m`, `1h`, `2d`, `1w`)."""
    relative = _RELATIVE.fullmatch(value.strip())
    if relative:
        ago = int(relative.group(1)) * _UNIT_S[relative.group(2)]
        return int(((time.time() if now_s is None else now_s) - ago) * 1000)
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise BadInput(
            f"{option} {value!r}: give RFC 3339 with an offset (2026-11-23T10:00:00Z)"
            " or a time ago (90s, 15m, 1h, 2d, 1w)"
        )
    return int(when.timestamp() * 1000)
