"""Server-mode tenancy (herald/sinks/migrations/tenancy.py) as far as chDB can check it:
chDB has no access control, so no policy is enforced here. ClickHouse's parser accepts every
statement, the policies cover every base table with a tenant_id, and docker-compose's
example tenant user gets the role and setting the policies read."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver import Client

from herald.sinks import migrations
from herald.sinks.migrations import tenancy
from tests.harness import migrated_chdb

REPO = Path(__file__).resolve().parent.parent
INITDB = REPO / "deploy" / "clickhouse" / "initdb" / "tenant-acme.sql"


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with migrated_chdb(tmp_path_factory.mktemp("tenancy") / "ch") as client:
        yield client


def parsed(ch: Client, statement: str) -> str:
    """The statement's AST root, as ClickHouse's parser reads it (it raises when it cannot)."""
    return bytes(ch.raw_query(f"EXPLAIN AST {statement}")).decode().split()[0]


# Every access-control step: tenancy's and the row policies of later tables (tenant_quotas).
SERVER_ONLY = [m for m in migrations.MIGRATIONS if m.server_only]


def test_chdb_records_the_steps_without_running_them(ch: Client) -> None:
    ledger = {r[0] for r in ch.query("SELECT version FROM schema_migrations").result_rows}
    assert {m.version for m in SERVER_ONLY} <= ledger
    assert set(tenancy.STEPS) <= set(SERVER_ONLY)
    with pytest.raises(Exception, match="ACCESS_DENIED"):
        ch.command(tenancy.STEPS[0].sql)  # why they are skipped


def test_every_step_parses(ch: Client) -> None:
    roots = [parsed(ch, m.sql) for m in SERVER_ONLY]
    policy = "CREATE"  # "CREATE ROW POLICY or ALTER ROW POLICY query"
    assert roots == ["CreateRoleQuery", "GrantQuery", policy, policy, policy, policy]


def test_the_policies_cover_every_base_table_with_a_tenant(ch: Client) -> None:
    with_tenant = {r[0] for r in ch.query(
        "SELECT table FROM system.columns WHERE database = currentDatabase()"
        " AND name = 'tenant_id' AND table IN (SELECT name FROM system.tables"
        " WHERE database = currentDatabase() AND engine NOT LIKE '%View')"
    ).result_rows}  # fmt: skip
    assert len(with_tenant) == 9
    covered: dict[str, set[str]] = {tenancy.ROLE: set(), "herald_operators": set()}
    for step in SERVER_ONLY[2:]:
        found = re.search(r"ROW POLICY IF NOT EXISTS (\w+) ON (.*?) FOR SELECT", step.sql)
        assert found, step.sql
        covered[found.group(1)] |= set(found.group(2).split(", "))
    assert covered == {tenancy.ROLE: with_tenant, "herald_operators": with_tenant}


def test_compose_provisions_a_tenant_user_the_policies_apply_to(ch: Client) -> None:
    statements = [s.strip() for s in re.sub(r"--.*", "", INITDB.read_text()).split(";")]
    statements = [s for s in statements if s]
    assert [parsed(ch, s) for s in statements][:2] == ["CreateRoleQuery", "CreateUserQuery"]
    text = " ".join(statements)
    assert f"CREATE ROLE IF NOT EXISTS {tenancy.ROLE}" in text
    assert f"SETTINGS {tenancy.TENANT_SETTING} = 'acme' CONST" in text
    assert f"GRANT {tenancy.ROLE} TO tenant_acme" in text
    prefixes = (REPO / "deploy/clickhouse/config.d/herald.xml").read_text()
    assert "<custom_settings_prefixes>SQL_</custom_settings_prefixes>" in prefixes
    assert tenancy.TENANT_SETTING.startswith("SQL_")
