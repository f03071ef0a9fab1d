"""SQL from people, read-only and optionally scoped to one tenant: `herald query`, `report`,
`search` and `escalations`, and the running process's /query and /report pages.

ClickHouse enforces both, on a client of its own (never the sink's):
- `readonly = 1`: DDL, INSERT, ALTER, SET and SETTINGS clauses are refused, and so are the
  table functions that reach files, URLs or other servers;
- with a tenant, `additional_table_filters` holding `tenant_id = T` for every table and view
  of the database with a tenant_id column (read from system.columns), set before readonly,
  so the SQL can neither change nor drop them.

What readonly still lets through in chDB 4.4 (each tried): several statements in one text
(all of them run), merge() (it reads the tables around the filters), mergeTreeIndex() and its
kin (they show key values), the scalar file() (it reads any file), INTO OUTFILE (it writes
one) and KILL QUERY. So ClickHouse's own parser checks the SQL first: formatQuerySingleLine
makes it exactly one statement (and is what runs), and EXPLAIN AST shows its kind, the
functions it calls and whether it writes a file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from herald.errors import BadInput, HeraldError
from herald.model.contracts import TENANT_MAX, TENANT_PATTERN
from herald.sinks import clickhouse

READS = "SELECT, WITH, SHOW, DESCRIBE, EXISTS, EXPLAIN"
_READ_NODES = ("Select", "Explain", "Show", "Describe", "Exists")
# Table functions that make rows from their arguments alone, or read through the filters.
DATA_TABLE_FUNCTIONS = frozenset({
    "numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries",
    "values", "view", "format", "null", "generaterandom", "primes",
})  # fmt: skip
_FUNCTION = re.compile(r"^ *Function (\w+)")
_TENANT = re.compile(TENANT_PATTERN)
# Other sessions' SQL (with their tenant literals) would show here: a tenant sees none.
_HIDDEN_SYSTEM_TABLES = ("system.processes",)


@contextmanager
def reader(dsn: str, tenant: str | None = None) -> Iterator[Client]:
    """A client of its own on `dsn`: read-only and, with `tenant`, seeing only its rows."""
    client = open_reader(dsn, tenant)
    try:
        yield client
    finally:
        client.close()


def open_reader(dsn: str, tenant: str | None = None) -> Client:
    """`reader`'s client, for a caller that keeps it open (close it when done)."""
    client = clickhouse.connect(dsn)
    try:
        if tenant is not None:
            filters = tenant_filters(client, check_tenant(tenant))
            client.set_client_setting("additional_table_filters", filters)
        client.set_client_setting("readonly", 1)
    except BaseException:
        client.close()
        raise
    return client


def check_tenant(tenant: str) -> str:
    """`tenant` if it is a tenant id of the contract (SPEC §2), else BadInput."""
    if len(tenant) > TENANT_MAX or not _TENANT.fullmatch(tenant):
        raise BadInput(f"--tenant {tenant!r}: 1 to {TENANT_MAX} characters of A-Z a-z 0-9 . _ -")
    return tenant


def tenant_filters(client: Client, tenant: str) -> dict[str, str]:
    """`additional_table_filters` for `tenant`: each table and view with a tenant_id."""
    scoped = client.query(
        "SELECT DISTINCT database, table FROM system.columns"
        " WHERE database = currentDatabase() AND name = 'tenant_id'"
    ).result_rows
    condition = f"tenant_id = '{tenant}'"  # check_tenant allows no quote or backslash
    filters = {f"{database}.{table}": condition for database, table in scoped}
    return {**filters, **dict.fromkeys(_HIDDEN_SYSTEM_TABLES, "0")}


def read(client: Client, sql: str) -> bytes:
    """ClickHouse's answer to one read statement, in the format it names; a one-line
    HeraldError when it is refused or wrong."""
    try:
        statement = _one_statement(client, sql)
        _check_read(client, statement)
        return bytes(client.raw_query(statement))
    except ClickHouseError as exc:
        raise HeraldError(_message(exc)) from None


def _one_statement(client: Client, sql: str) -> str:
    """`sql` as ClickHouse parses it: one statement, else a syntax error."""
    try:
        formatted = client.raw_query(
            "SELECT formatQuerySingleLine({sql:String}) FORMAT RawBLOB", parameters={"sql": sql}
        )
    except ClickHouseError as exc:  # the error would quote the wrapper around the SQL
        reason = _message(exc).split(": In scope SELECT formatQuerySingleLine")[0]
        raise HeraldError(reason.strip()) from None
    return bytes(formatted).decode()


def _check_read(client: Client, statement: str) -> None:
    tree = bytes(client.raw_query(f"EXPLAIN AST {statement}")).decode().splitlines()
    if not tree[0].startswith(_READ_NODES):
        verb = statement.split(None, 1)[0].upper()
        raise HeraldError(f"refused: queries are read-only ({READS}), not {verb}")
    if any(line.startswith(" Literal ") for line in tree[1:]):
        # The only literal child of a query's root is INTO OUTFILE's path.
        raise HeraldError("refused: queries are read-only, INTO OUTFILE writes a file")
    blocked = _table_functions(client) - DATA_TABLE_FUNCTIONS | {"file"}
    for line in tree:
        found = _FUNCTION.match(line)
        if found and found.group(1).lower() in blocked:
            raise HeraldError(
                f"refused: {found.group(1)}() reads outside the tables a query may read"
            )


def _table_functions(client: Client) -> set[str]:
    names = client.query("SELECT name FROM system.table_functions").result_rows
    return {str(name).lower() for (name,) in names}


def _message(exc: ClickHouseError) -> str:
    reason = clickhouse.reason(exc)
    if "readonly mode" in reason:
        return f"refused: queries are read-only ({reason})"
    return reason
