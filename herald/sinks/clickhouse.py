"""ClickHouse access: connect to embedded chDB or a server, and insert JSON-like rows fast.

Rows arrive as plain dicts (they travelled through Kafka as JSON), so `insert` converts each
column to what its ClickHouse type needs and sends the batch column-oriented, which is about
twice as fast as row lists (FACTS.md).
"""

from __future__ import annotations

import logging
import re
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import ParseResult, unquote, urlparse

import clickhouse_connect
import orjson
from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

from herald.errors import HeraldError, ServiceUnavailable
from herald.model.schema import DATABASE

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Convert = Callable[[list[Any]], list[Any]]


# --- connection -------------------------------------------------------------------------


def connect(dsn: str) -> Client:
    """Open `chdb:///abs/path` (embedded) or `http(s)://user:pass@host:port[/db]` (server).

    Creates the database (`herald`, or the one the server DSN names) if missing and makes it
    the client's default. Raises ServiceUnavailable when the server cannot be reached and
    HeraldError for any other problem, each with a one-line message.
    """
    parsed = urlparse(dsn)
    if parsed.scheme == "chdb":
        client, database = _open_chdb(parsed), DATABASE
    elif parsed.scheme in ("http", "https"):
        client, database = _open_server(parsed), unquote(parsed.path.strip("/")) or DATABASE
    else:
        raise HeraldError(f"unsupported ClickHouse DSN {dsn!r}: use chdb:///abs/path or http(s)://")
    try:
        _check_identifier(database)
        with reachable(client.uri):
            client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    except BaseException:
        client.close()
        raise
    client.database = database
    return client


def _open_chdb(parsed: ParseResult) -> Client:
    # `chdb://data/x` would silently open location `data` with database `x` (FACTS.md).
    if parsed.netloc or not parsed.path.startswith("/"):
        raise HeraldError(
            f"chDB DSN must hold an absolute path: chdb:///abs/path, not {parsed.geturl()}"
        )
    path = Path(unquote(parsed.path))
    path.mkdir(parents=True, exist_ok=True)
    try:
        return clickhouse_connect.get_client(interface="chdb", path=str(path))
    except ClickHouseError as ex:
        raise HeraldError(
            f"cannot open embedded ClickHouse at {path} (is another process using it?): "
            f"{_first_line(ex)}"
        ) from ex


def _open_server(parsed: ParseResult) -> Client:
    address = f"{parsed.hostname or 'localhost'}:{parsed.port or 'default port'}"
    # clickhouse-connect takes the TLS choice from `interface`, not from the DSN's scheme,
    # and the database from the path: that database may not exist yet, so connect without it.
    dsn = parsed._replace(path="").geturl()
    try:
        with reachable(address):
            return clickhouse_connect.get_client(
                dsn=dsn, interface=parsed.scheme, connect_timeout=CONNECT_TIMEOUT_S
            )
    except ServiceUnavailable:
        raise
    except ClickHouseError as ex:
        raise HeraldError(f"ClickHouse at {address} refused the connection: {reason(ex)}") from ex


@contextmanager
def reachable(where: str) -> Iterator[None]:
    """Turn transport failures into ServiceUnavailable (callers retry with backoff)."""
    try:
        yield
    except OperationalError as ex:
        raise ServiceUnavailable(f"cannot reach ClickHouse at {where}: {_root_cause(ex)}") from ex


def _root_cause(ex: BaseException) -> str:
    while ex.__cause__ is not None:
        ex = ex.__cause__
    return _first_line(ex)


# What follows ClickHouse's reason: its error name and the server's version (an official
# build's has parentheses of its own), twice for a nested error, then the URL
# clickhouse-connect's HTTP client adds.
_TRAILER = re.compile(
    r"(?:\.? \((?:[A-Z][A-Z0-9_]+|version [^()]*(?:\([^()]*\))?|for url [^()]*)\))+\.?$"
)


def reason(ex: ClickHouseError) -> str:
    """ClickHouse's reason for an error, on one line: without the code, the error name, the
    version and the URL around it, so it reads the same from chDB and from a server."""
    lines = str(ex).strip().splitlines() or [type(ex).__name__]
    # The HTTP client puts ClickHouse's own line second, after its own.
    line = next((x for x in lines if "DB::Exception: " in x), lines[0])
    found = re.sub(r"^(?:.*?DB::Exception: )+(?:default: )?", "", line)
    return _TRAILER.sub("", found)


def _first_line(ex: BaseException) -> str:
    lines = str(ex).strip().splitlines()
    return lines[0][:300] if lines else type(ex).__name__


def _check_identifier(name: str) -> None:
    if not _IDENTIFIER.fullmatch(name):
        raise HeraldError(f"not a valid ClickHouse identifier: {name!r}")


# --- insert -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    name: str
    type: str
    server_default: bool  # has a DEFAULT expression: rows without a value let the server fill it
    convert: Convert


def insert(client: Client, table: str, rows: list[dict[str, Any]]) -> int:
    """Insert JSON-like rows column-oriented; returns the number of rows written.

    Per column type: DateTime takes epoch seconds, DateTime64(n) epoch ticks (milliseconds for
    n = 3), both also accept datetimes and ISO 8601 strings; Map keys may be strings; String
    columns take dicts and lists as JSON. A missing key or None gets the column's default.
    """
    if not rows:
        return 0
    columns = _columns(client, table)
    _warn_unknown_keys(table, columns, rows)
    for missing, group in _group_by_missing_defaults(columns, rows).items():
        present = [c for c in columns if c.name not in missing]
        with reachable(client.uri):
            client.insert(
                table,
                [c.convert([row.get(c.name) for row in group]) for c in present],
                column_names=[c.name for c in present],
                column_type_names=[c.type for c in present],
                column_oriented=True,
            )
    return len(rows)


# Positional JSON rows: nulls become column defaults, objects are kept as JSON strings.
JSON_ROWS_SETTINGS = {
    "input_format_null_as_default": 1,
    "input_format_json_read_objects_as_strings": 1,
}


def insert_json_rows(client: Client, table: str, columns: Sequence[str], body: bytes) -> None:
    """Insert JSON arrays of `columns` values, separated by commas or newlines
    (JSONCompactEachRow), parsed in C++."""
    if body:
        _check_identifier(table)
        with reachable(client.uri):
            client.raw_insert(table, columns, insert_block=body, settings=JSON_ROWS_SETTINGS,
                              fmt="JSONCompactEachRow")  # fmt: skip


# Column types per client and table, read once: the sink inserts every second, and asking
# system.columns each time cost a query per table per batch.
_COLUMNS: weakref.WeakKeyDictionary[Client, dict[str, list[_Column]]] = weakref.WeakKeyDictionary()


def _columns(client: Client, table: str) -> list[_Column]:
    known = _COLUMNS.setdefault(client, {})
    if table not in known:
        known[table] = _read_columns(client, table)
    return known[table]


def _read_columns(client: Client, table: str) -> list[_Column]:
    _check_identifier(table)
    with reachable(client.uri):
        described = client.query(
            "SELECT name, type, default_kind FROM system.columns"
            " WHERE database = currentDatabase() AND table = {table:String}"
            " AND default_kind IN ('', 'DEFAULT') ORDER BY position",
            parameters={"table": table},
        ).result_rows
    if not described:
        raise HeraldError(f"ClickHouse table {table!r} does not exist: run `herald db migrate`")
    return [
        _Column(name, type_, kind == "DEFAULT", _converter(type_))
        for name, type_, kind in described
    ]


_warned: set[tuple[str, frozenset[str]]] = set()


def _warn_unknown_keys(table: str, columns: list[_Column], rows: list[dict[str, Any]]) -> None:
    unknown = frozenset(set().union(*rows) - {c.name for c in columns})
    if unknown and (table, unknown) not in _warned:
        _warned.add((table, unknown))
        log.warning("%s has no columns %s: those values are not stored", table, sorted(unknown))


def _group_by_missing_defaults(
    columns: list[_Column], rows: list[dict[str, Any]]
) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """Split rows by which DEFAULT-expression columns they lack (almost always one group)."""
    defaulted = [c.name for c in columns if c.server_default]
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(n for n in defaulted if row.get(n) is None)].append(row)
    return groups


# --- per-type conversion --------------------------------------------------------------------


def _converter(type_name: str) -> Convert:
    """A function turning one column of JSON-like values into what the type's writer takes."""
    inner = _unwrap(type_name, "LowCardinality")  # LowCardinality(Nullable(T)) is nullable too
    nullable = inner.startswith("Nullable(")
    inner = _unwrap(inner, "Nullable")
    native, to_native, zero = _scalar(inner)
    default = None if nullable else zero

    def convert(values: list[Any]) -> list[Any]:
        return [default if v is None else v if type(v) is native else to_native(v) for v in values]

    return convert


def _unwrap(type_name: str, wrapper: str) -> str:
    prefix = wrapper + "("
    return type_name[len(prefix) : -1] if type_name.startswith(prefix) else type_name


def _scalar(type_name: str) -> tuple[type, Callable[[Any], Any], Any]:
    """(the value type the writer takes as is, how to get it from anything else, the zero)."""
    if type_name.startswith("DateTime64"):
        scale = int(re.findall(r"\d+", type_name)[1])
        return int, lambda v: _epoch_ticks(v, 10**scale), 0
    if type_name.startswith("DateTime"):
        return int, lambda v: _epoch_ticks(v, 1), 0
    if re.fullmatch(r"U?Int\d+", type_name):
        return int, int, 0
    if re.fullmatch(r"Float\d+", type_name):
        return float, float, 0.0
    if type_name == "String":
        return str, _to_text, ""
    if type_name.startswith("Map("):
        return _NeverNative, _map_converter(type_name), {}
    if type_name.startswith("Array("):
        return list, list, []
    return object, lambda v: v, None


class _NeverNative:
    """Marks types whose values always go through conversion (maps: keys came as strings)."""


def _map_converter(type_name: str) -> Callable[[Any], dict[Any, Any]]:
    key_type = type_name[len("Map(") :].split(",", 1)[0].strip()
    if re.fullmatch(r"U?Int\d+", key_type):
        return lambda d: {int(k): n for k, n in d.items()}
    return dict


def _epoch_ticks(value: Any, per_second: int) -> int:
    """Epoch ticks from a number already in ticks, a datetime or an ISO 8601 string."""
    if isinstance(value, int | float):
        return round(value)
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(when.timestamp() * per_second)


def _to_text(value: Any) -> str:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
