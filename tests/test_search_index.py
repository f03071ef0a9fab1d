"""Migrations 20-21 on an events_raw that already holds events: the search index is built for
the parts written before it too (MATERIALIZE INDEX), and a search finds the same rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver import Client

from herald.bench.search import LIFECYCLE, RARE_WORD, fill_sql
from herald.processes.child import wait_for
from herald.processes.search import SearchRequest, search_sql
from herald.sinks.clickhouse import connect
from herald.sinks.migrations import base, migrate
from tests.test_search import skip_granules


@pytest.fixture
def released(tmp_path: Path) -> Iterator[Client]:
    """A database as the released migrations 1-13 left it, holding 100 k raw events."""
    client = connect(f"chdb://{tmp_path.resolve()}")
    try:
        for step in base.STEPS:
            client.command(step.sql)
        client.command(fill_sql(100_000))
        yield client
    finally:
        client.close()


def test_the_index_is_built_for_events_stored_before_it(released: Client) -> None:
    sql = search_sql(SearchRequest(RARE_WORD))
    before = released.query(sql).result_rows
    assert len(before) == len(LIFECYCLE)
    migrate(released)
    pending = "SELECT count() FROM system.mutations WHERE table = 'events_raw' AND NOT is_done"
    wait_for(lambda: released.query(pending).result_rows[0][0] == 0, 60, "MATERIALIZE INDEX")
    left, granules = skip_granules(released, sql)
    assert left == 1 < granules
    assert released.query(sql).result_rows == before
