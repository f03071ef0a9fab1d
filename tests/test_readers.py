"""Read-only, tenant-scoped SQL (herald.sinks.readers) on a real chDB: what ClickHouse
refuses, what the parser check refuses, and that a scoped reader never sees another tenant's
rows, whatever the SQL tries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from herald.errors import BadInput, HeraldError
from herald.processes.query import Readers
from herald.sinks import clickhouse, migrations, readers

TENANTS = ("acme", "other")


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated chDB with two broadcasts per tenant and a window row each."""
    dsn = f"chdb://{tmp_path_factory.mktemp('readers') / 'clickhouse'}"
    client = clickhouse.connect(dsn)
    try:
        migrations.migrate(client)
        clickhouse.insert(client, "broadcasts", [
            {"tenant_id": t, "broadcast_id": f"{t}-b{i}", "title": f"{t} news", "version": 1}
            for t in TENANTS for i in range(2)
        ])  # fmt: skip
        clickhouse.insert(client, "broadcast_stats_1m", [
            {"tenant_id": t, "broadcast_id": f"{t}-b{i}", "window_start": 1_764_000_000,
             "delivered": 3, "version": 1}
            for t in TENANTS for i in range(2)
        ])  # fmt: skip
    finally:
        client.close()
    yield dsn


def rows(dsn: str, sql: str, tenant: str | None = None) -> list[dict[str, object]]:
    with readers.reader(dsn, tenant) as client:
        text = readers.read(client, f"{sql} FORMAT JSONEachRow").decode()
    return [orjson.loads(line) for line in text.splitlines()]


def refusal(dsn: str, sql: str, tenant: str | None = None) -> str:
    with readers.reader(dsn, tenant) as client, pytest.raises(HeraldError) as refused:
        readers.read(client, sql)
    message = str(refused.value)
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    return message


SNEAKY = [
    "SELECT tenant_id, broadcast_id FROM broadcasts WHERE tenant_id = 'other'",
    "SELECT tenant_id, broadcast_id FROM herald.broadcasts FINAL",
    "SELECT tenant_id, broadcast_id FROM broadcast_summary WHERE tenant_id = 'other'",
    "SELECT tenant_id, broadcast_id FROM broadcasts UNION ALL"
    " SELECT tenant_id, broadcast_id FROM broadcast_stats_1m WHERE tenant_id != 'acme'",
    "SELECT tenant_id, broadcast_id FROM (SELECT * FROM broadcasts) WHERE tenant_id = 'other'",
    "SELECT b.tenant_id AS tenant_id, b.broadcast_id AS broadcast_id FROM broadcasts AS b"
    " JOIN broadcast_stats_1m AS s USING (tenant_id, broadcast_id)",
    "WITH o AS (SELECT * FROM broadcasts WHERE tenant_id = 'other')"
    " SELECT tenant_id, broadcast_id FROM o",
    "SELECT tenant_id, broadcast_id FROM view(SELECT * FROM broadcasts)",
    "SELECT tenant_id, broadcast_id FROM broadcast_stats_1m"
    " WHERE broadcast_id IN (SELECT broadcast_id FROM broadcasts WHERE tenant_id = 'other')",
    # Rows labelled with the tenant's own id, holding another tenant's broadcast ids.
    "SELECT 'acme' AS tenant_id, arrayJoin((SELECT groupArray(broadcast_id) FROM broadcasts"
    " WHERE tenant_id = 'other')) AS broadcast_id",
]


@pytest.mark.parametrize("sql", SNEAKY)
def test_a_tenant_sees_only_its_rows_whatever_the_sql_tries(dsn: str, sql: str) -> None:
    everyone = rows(dsn, sql)
    scoped = rows(dsn, sql, "acme")
    assert any(str(r["broadcast_id"]).startswith("other-") for r in everyone)
    assert scoped == [r for r in everyone if str(r["broadcast_id"]).startswith("acme-")]


def test_every_table_and_view_with_a_tenant_is_scoped(dsn: str) -> None:
    with readers.reader(dsn) as client:
        scoped = client.query(
            "SELECT DISTINCT table FROM system.columns"
            " WHERE database = currentDatabase() AND name = 'tenant_id'"
        ).result_rows
    assert len(scoped) >= 10  # seven tables and the four views (SPEC §6)
    for (table,) in scoped:
        other = f"SELECT count() AS n FROM {table} WHERE tenant_id = 'other'"
        assert rows(dsn, other, "acme") == [{"n": 0}], table
    assert rows(dsn, "SELECT count() AS n FROM broadcasts WHERE tenant_id = 'other'") == [{"n": 2}]


def test_writes_and_setting_changes_are_refused_and_change_nothing(
    dsn: str, tmp_path: Path
) -> None:
    outfile = tmp_path / "leak.tsv"
    refused = {
        "DROP TABLE herald.broadcasts": "not DROP",
        "CREATE TABLE herald.intruder (a Int8) ENGINE = Memory": "not CREATE",
        "ALTER TABLE broadcasts DELETE WHERE 1": "not ALTER",
        "INSERT INTO broadcasts (tenant_id, broadcast_id) VALUES ('x', 'y')": "not INSERT",
        "SET readonly = 0": "not SET",
        "KILL QUERY WHERE 1": "not KILL",
        "SELECT 1; DROP TABLE broadcasts": "Multi-statements are not allowed",
        f"SELECT * FROM broadcasts INTO OUTFILE '{outfile}'": "INTO OUTFILE writes a file",
    }
    for sql, why in refused.items():
        assert why in refusal(dsn, sql), sql
    assert not outfile.exists()
    assert rows(dsn, "SELECT count() AS n FROM broadcasts") == [{"n": 4}]
    assert rows(dsn, "EXISTS TABLE intruder") == [{"result": 0}]


@pytest.mark.parametrize("setting", ["readonly = 0", "additional_table_filters = {}"])
def test_a_query_cannot_change_its_settings(dsn: str, setting: str) -> None:
    """ClickHouse's own refusal (readonly = 1), not the parser check: SETTINGS is a read."""
    message = refusal(dsn, f"SELECT * FROM broadcasts SETTINGS {setting}", "acme")
    assert message.startswith("refused: queries are read-only (Cannot modify")


@pytest.mark.parametrize("sql", [
    "SELECT * FROM merge(currentDatabase(), '^broadcasts$')",
    "SELECT * FROM mergeTreeIndex(currentDatabase(), 'broadcasts')",
    "SELECT file('/etc/hostname')",
    "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
    "SELECT * FROM remote('127.0.0.1', herald.broadcasts)",
])  # fmt: skip
def test_functions_reading_around_the_tables_are_refused(dsn: str, sql: str) -> None:
    assert "reads outside the tables a query may read" in refusal(dsn, sql, "acme")


def test_reads_still_work(dsn: str) -> None:
    assert rows(dsn, "SELECT number FROM numbers(2)", "acme") == [{"number": 0}, {"number": 1}]
    with readers.reader(dsn, "acme") as client:
        assert readers.read(client, "SHOW TABLES FORMAT TSV").decode().count("\n") >= 10
        assert b"broadcast_id" in readers.read(client, "DESCRIBE TABLE broadcasts")
        assert b"ReadFromMergeTree" in readers.read(client, "EXPLAIN SELECT * FROM broadcasts")
    assert refusal(dsn, "SELECT nope FROM nowhere").startswith("Unknown table expression")


def test_a_tenant_sees_no_other_session_in_the_process_list(dsn: str) -> None:
    processes = "SELECT count() AS n FROM system.processes"
    assert rows(dsn, processes) == [{"n": 1}]  # this very query
    assert rows(dsn, processes, "acme") == [{"n": 0}]


def test_a_bad_tenant_is_bad_input(dsn: str) -> None:
    with pytest.raises(BadInput, match="--tenant"), readers.reader(dsn, "x' OR 1 --"):
        pass


def test_the_running_process_keeps_each_tenants_client_to_that_tenant(dsn: str) -> None:
    """The /query page's clients stay open between requests (herald.processes.query.Readers):
    a kept client only ever serves the tenant it was opened for, and one whose query was
    refused is closed, not kept."""
    pool = Readers(dsn, keep=2)
    sql = "SELECT DISTINCT tenant_id FROM broadcasts ORDER BY tenant_id FORMAT TSV"
    for _ in range(2):
        assert pool.answer(sql, "acme") == b"acme\n"
        assert pool.answer(sql, "other") == b"other\n"
        assert pool.answer(sql, None) == b"acme\nother\n"
    assert [tenant for tenant, _ in pool._idle] == ["other", None]  # at most two kept
    with pytest.raises(HeraldError, match="read-only"):
        pool.answer("DROP TABLE broadcasts", "other")
    assert [tenant for tenant, _ in pool._idle] == [None]
    assert pool.answer(sql, "other") == b"other\n"
