"""Versioned ClickHouse migrations: base tables and the analysts' views of database `herald`.

Each migration is one named step, applied once, in order, and recorded in `schema_migrations`.
Released migrations never change: a schema change is a new step, with a new version, in the
module of the feature that needs it (`base` holds 1-13, `reach` 14-18, `search` 20-21,
`tenancy` 30-33, `engagement` 40-41, `quota` 50-53).
Statements are idempotent (IF NOT EXISTS / OR REPLACE), so a step interrupted between its DDL
and its record, or run by two sinks at once, is safe to run again.

Conventions: every row is a full snapshot with a growing `version`, so tables are
ReplacingMergeTree(version) and readers use FINAL (the views do). Histograms count
milliseconds in log buckets (see herald.model.schema); a bucket b stands for 2^((b + 0.5) / 8).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

from herald.errors import HeraldError
from herald.sinks import clickhouse
from herald.sinks.migrations import base, engagement, quota, reach, search, tenancy
from herald.sinks.migrations.step import Migration

log = logging.getLogger(__name__)
# One module per feature that changed the schema; versions are unique and increasing.
_STEPS = (*base.STEPS, *reach.STEPS, *search.STEPS, *tenancy.STEPS, *engagement.STEPS, *quota.STEPS)
MIGRATIONS: tuple[Migration, ...] = tuple(sorted(_STEPS, key=lambda m: m.version))

EMBEDDED_SKIP = " (skipped: embedded ClickHouse has no access control)"
_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree()
ORDER BY version
"""


def migrate(client: Client, raw_ttl_days: int = 30,
            quotas: Mapping[str, float] | None = None) -> list[str]:  # fmt: skip
    """Apply pending migrations in order, set the events_raw TTL and, unless `quotas` is None,
    the configured tenant quotas; returns what was done.

    One line per applied migration (`0003_create_broadcasts`), plus `events_raw TTL N days`
    when the TTL changed and `tenant_quotas: acme 5000 events/s` per changed quota. A second
    call with the same arguments returns [].
    """
    if raw_ttl_days < 1:
        raise ValueError(f"raw_ttl_days must be at least 1, not {raw_ttl_days}")
    with clickhouse.reachable(client.uri):  # gone meanwhile: one line (the sink retries)
        client.command(_LEDGER)
        applied = {
            row[0] for row in client.query("SELECT version FROM schema_migrations").result_rows
        }
        done = []
        for migration in MIGRATIONS:
            if migration.version not in applied:
                done.append(_apply(client, migration))
        if _raw_ttl_days(client) != raw_ttl_days:
            client.command(
                "ALTER TABLE events_raw"
                f" MODIFY TTL toDateTime(ingested_at) + INTERVAL {raw_ttl_days} DAY"
            )
            done.append(f"events_raw TTL {raw_ttl_days} days")
        if quotas is not None:
            done += quota.sync_quotas(client, quotas)
        return done


def _apply(client: Client, migration: Migration) -> str:
    """Run one step and record it; what `migrate` reports of it."""
    skipped = migration.server_only and client.uri.startswith("chdb:")
    log.info("%s migration %s", "recording" if skipped else "applying", migration.label)
    if not skipped:
        try:
            client.command(migration.sql)
        except OperationalError:
            raise  # the connection failed, not the step
        except ClickHouseError as exc:  # e.g. a server user without access management
            raise HeraldError(
                f"migration {migration.label} failed: {clickhouse.reason(exc)}"
            ) from exc
    client.insert(
        "schema_migrations", [[migration.version, migration.name]], column_names=["version", "name"]
    )
    return migration.label + (EMBEDDED_SKIP if skipped else "")


def _raw_ttl_days(client: Client) -> int | None:
    engine = client.query(
        "SELECT engine_full FROM system.tables"
        " WHERE database = currentDatabase() AND name = 'events_raw'"
    ).result_rows[0][0]
    found = re.search(r"TTL toDateTime\(ingested_at\) \+ toIntervalDay\((\d+)\)", engine)
    return int(found.group(1)) if found else None
