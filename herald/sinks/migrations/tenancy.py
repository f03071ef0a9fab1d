"""Tenant isolation on a ClickHouse server: one role for every tenant's users, whose rows a
row policy picks by a setting of the user (steps 30-33).

- Role `herald_tenant`: SELECT on the database (its tables and views).
- Row policy `herald_tenant` on each base table with a tenant_id: the rows where tenant_id
  is the user's `SQL_herald_tenant` setting, for the role's members.
- Row policy `herald_operators` on the same tables: every row, for every other user. Once a
  table has any policy, a user that none names sees no row at all, and the sink, the workers
  and operators must go on seeing everything.

A tenant's user (docs/architecture.md, docker-compose.yml's example): the setting fixed with
CONST, so the user cannot change it, and the role as its only grant (`SET ROLE NONE` then
leaves it no SELECT at all). A member without the setting gets an error, never every row.
Views run as the invoker (the default for normal views), so the policies apply through them.
The server must accept custom settings named SQL_... (`custom_settings_prefixes`,
deploy/clickhouse/config.d/herald.xml).

chDB has no access control (tried: CREATE ROLE and CREATE ROW POLICY are refused with
ACCESS_DENIED, SQL_ settings are unknown), so these steps are recorded there without
running; herald.sinks.readers scopes embedded reads instead.
"""

from __future__ import annotations

from herald.sinks.migrations.step import Migration

ROLE = "herald_tenant"
TENANT_SETTING = "SQL_herald_tenant"
# Released: the base tables with a tenant_id when these steps were written. A later table
# with a tenant_id needs a policy step of its own.
_TABLES = (
    "broadcast_stats_1m", "region_stats_1m", "broadcasts", "escalations", "delivery_retries",
    "events_raw", "invalid_events", "pipeline_stats_1m",
)  # fmt: skip


def row_policies(version: int, tables: tuple[str, ...], tenant_step: str,
                 operators_step: str) -> tuple[Migration, Migration]:  # fmt: skip
    """Steps `version` and `version + 1`: the tenants' policy and the operators' on `tables`."""
    on = ", ".join(tables)
    return (
        Migration(
            version,
            tenant_step,
            f"CREATE ROW POLICY IF NOT EXISTS {ROLE} ON {on}"
            f" FOR SELECT USING tenant_id = getSetting('{TENANT_SETTING}') TO {ROLE}",
            server_only=True,
        ),
        Migration(
            version + 1,
            operators_step,
            f"CREATE ROW POLICY IF NOT EXISTS herald_operators ON {on}"
            f" FOR SELECT USING 1 TO ALL EXCEPT {ROLE}",
            server_only=True,
        ),
    )


STEPS: tuple[Migration, ...] = (
    Migration(30, "tenant_role", f"CREATE ROLE IF NOT EXISTS {ROLE}", server_only=True),
    Migration(31, "tenant_role_reads", f"GRANT SELECT ON * TO {ROLE}", server_only=True),
    *row_policies(32, _TABLES, "tenant_row_policy", "operators_row_policy"),
)
