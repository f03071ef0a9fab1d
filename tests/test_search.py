"""`herald search` (SPEC §7) on events_raw filled by the real pipeline (tests/conftest.py).

The oracle is the produced messages: each valid event once, its searchable fields tokenized
here independently of the SQL (lower case, runs of ASCII letters and digits).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver import Client

from herald.dashboards.boards.search import SEARCH
from herald.dashboards.macros import VariableState, expand
from herald.dashboards.runner import Frame, choose_all, data_time_range, resolve_variables, run_sql
from herald.load.produce import SimEvent
from herald.model import topics
from herald.processes.search import MAX_LIMIT, SearchRequest, parse_time, search_sql
from herald.sinks.migrations.search import SEARCH_INDEX
from tests.harness import Herald

Event = dict[str, Any]
# Fields that are columns of their own and not searched; the rest of a broadcast is payload.
NOT_SEARCHED = {"topic", "tenant_id", "type", "occurred_at", "schema_version", "channel",
                "region", "attempt", "latency_ms", "retryable"}  # fmt: skip


@pytest.fixture(scope="module")
def oracle(pipeline_messages: list[SimEvent]) -> list[Event]:
    """Every valid event once (duplicates share tenant and event id), with its topic."""
    events: dict[tuple[str, str], Event] = {}
    for message in pipeline_messages:
        if message.event is not None:
            event = {**message.event, "topic": message.topic}
            events.setdefault((event["tenant_id"], event["event_id"]), event)
    return list(events.values())


@pytest.fixture(scope="module")
def ch(pipeline_clickhouse: Client, oracle: list[Event]) -> Client:
    stored = pipeline_clickhouse.query("SELECT uniqExact(tenant_id, event_id) FROM events_raw")
    assert stored.result_rows[0][0] == len(oracle), "events_raw holds every valid event"
    return pipeline_clickhouse


def found(ch: Client, text: str, **filters: Any) -> list[Event]:
    result = ch.query(search_sql(SearchRequest(text, **filters)))
    return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]


def ids(rows: list[Event]) -> set[str]:
    return {row["event_id"] for row in rows}


def _tokens(value: Any) -> list[str]:
    return re.findall(r"[a-z0-9]+", orjson.dumps(value).decode().lower())


def _fields(event: Event) -> list[list[str]]:
    return [_tokens(v) for k, v in event.items() if k not in NOT_SEARCHED and v is not None]


def _holds(fields: list[list[str]], word: str) -> bool:
    """The word's tokens, adjacent and in order, in one field."""
    want = _tokens(word)
    return any(want == f[i : i + len(want)] for f in fields for i in range(len(f)))


def expected(
    oracle: list[Event], text: str, keep: Callable[[Event], bool] | None = None
) -> set[str]:
    return {e["event_id"] for e in oracle if (keep is None or keep(e))
            and all(_holds(_fields(e), w) for w in text.split())}  # fmt: skip


def epoch_ms(event: Event) -> int:
    return int(datetime.fromisoformat(event["occurred_at"]).timestamp() * 1000)


def a_poll(oracle: list[Event]) -> Event:
    return next(e for e in oracle if e["topic"] == topics.BROADCASTS
                and e.get("title", "").startswith("Poll"))  # fmt: skip


def test_title_words_in_any_order_and_case_find_the_broadcasts_lifecycle(
    ch: Client, oracle: list[Event]
) -> None:
    number = a_poll(oracle)["title"].split()[1]
    text = f"{number} POLL"
    want = expected(oracle, text)
    assert want and all(e["topic"] == topics.BROADCASTS for e in oracle if e["event_id"] in want)
    rows = found(ch, text, limit=MAX_LIMIT)
    assert ids(rows) == want
    assert all(row["title"].startswith(f"Poll {number} ") for row in rows)
    assert found(ch, f"{number} xylophone poll") == [], "every word counts, not only the ends"


def test_a_broadcast_id_finds_all_its_events_and_an_event_id_exactly_one(
    ch: Client, oracle: list[Event]
) -> None:
    poll = a_poll(oracle)
    events = {e["event_id"] for e in oracle if e["broadcast_id"] == poll["broadcast_id"]}
    assert 100 < len(events) < MAX_LIMIT
    rows = found(ch, poll["broadcast_id"], limit=MAX_LIMIT)
    assert len(rows) == len(ids(rows)) == len(events) and ids(rows) == events
    prefix, suffix = poll["broadcast_id"].split("-")
    assert found(ch, f"{suffix}-{prefix}") == [], "an id's parts must be adjacent, in order"
    assert ids(found(ch, poll["event_id"].upper())) == {poll["event_id"]}


def test_a_user_id_is_scoped_by_tenant(ch: Client, oracle: list[Event]) -> None:
    """User ids repeat across tenants (each has its own u000000…): a tenant sees only its own."""
    user = next(e["user_id"] for e in oracle if e.get("user_id"))
    tenants = {e["tenant_id"] for e in oracle if e.get("user_id") == user}
    assert len(tenants) > 1
    everywhere = found(ch, user, limit=MAX_LIMIT)
    assert {row["tenant_id"] for row in everywhere} == tenants
    for tenant in tenants:
        rows = found(ch, user, tenant=tenant, limit=MAX_LIMIT)
        assert {row["tenant_id"] for row in rows} == {tenant}
        assert ids(rows) == expected(oracle, user, lambda e, t=tenant: e["tenant_id"] == t)


def test_filters_narrow_to_user_type_and_time_range(ch: Client, oracle: list[Event]) -> None:
    poll = a_poll(oracle)
    mine = sorted((e for e in oracle if e["broadcast_id"] == poll["broadcast_id"]), key=epoch_ms)
    since, until = epoch_ms(mine[len(mine) // 4]), epoch_ms(mine[3 * len(mine) // 4])
    between = {e["event_id"] for e in mine if since <= epoch_ms(e) < until}
    rows = found(ch, poll["broadcast_id"], since_ms=since, until_ms=until, limit=MAX_LIMIT)
    assert ids(rows) == between  # since inclusive, until exclusive
    rows = found(ch, poll["broadcast_id"], types=("delivered", "read"), since_ms=since,
                 until_ms=until, limit=MAX_LIMIT)  # fmt: skip
    want = {e["event_id"] for e in mine if e["type"] in ("delivered", "read")} & between
    assert want and ids(rows) == want
    user = next(e for e in mine if e.get("user_id"))
    rows = found(ch, poll["broadcast_id"], user=user["user_id"], broadcast=poll["broadcast_id"],
                 tenant=poll["tenant_id"], limit=MAX_LIMIT)  # fmt: skip
    assert ids(rows) == {e["event_id"] for e in mine if e.get("user_id") == user["user_id"]}


def test_limit_keeps_the_newest_first(ch: Client, oracle: list[Event]) -> None:
    poll = a_poll(oracle)
    times = sorted((epoch_ms(e) for e in oracle if e["broadcast_id"] == poll["broadcast_id"]),
                   reverse=True)  # fmt: skip
    rows = found(ch, poll["broadcast_id"], limit=25)
    assert [int(row["occurred_at"].timestamp() * 1000) for row in rows] == times[:25]


def skip_granules(ch: Client, sql: str) -> tuple[int, int]:
    """(granules left, granules before) of the search index in the query's plan."""
    plan = bytes(ch.raw_query(f"EXPLAIN indexes = 1 {sql}")).decode()
    found = re.search(rf"Name: {SEARCH_INDEX}\n.*?Granules: (\d+)/(\d+)", plan, re.DOTALL)
    assert found, f"the search index is not in the plan:\n{plan}"
    return int(found.group(1)), int(found.group(2))


def test_the_index_drops_the_granules_without_the_words(ch: Client, oracle: list[Event]) -> None:
    text = f"poll {a_poll(oracle)['title'].split()[1]}"
    sql = search_sql(SearchRequest(text, limit=MAX_LIMIT))
    left, before = skip_granules(ch, sql)
    assert 0 < left < before
    scanned = ch.query(sql, settings={"use_skip_indexes": 0}).result_rows
    assert sorted(scanned) == sorted(ch.query(sql).result_rows)  # the index loses nothing


@pytest.mark.parametrize("text", ["xylophone", "o'brien \\ 'quoted'"])
def test_a_word_that_occurs_nowhere_finds_nothing_and_reads_no_granule(
    ch: Client, text: str
) -> None:
    assert found(ch, text) == []
    assert skip_granules(ch, search_sql(SearchRequest(text)))[0] == 0


def _search_panels(ch: Client, text: str) -> dict[str, Frame]:
    """The Search dashboard's panels with `text` typed in its box, expanded as Grafana does."""
    start, end = data_time_range(ch)
    ctx = resolve_variables(ch, SEARCH, start, end, choose_all)
    ctx = replace(ctx, variables={**ctx.variables, "search": VariableState(text)})
    return {panel.type: run_sql(ch, expand(panel.sql, ctx)) for panel in SEARCH.panels}


def test_the_search_dashboard_lists_what_the_command_finds(ch: Client, oracle: list[Event]) -> None:
    text = f"Poll {a_poll(oracle)['title'].split()[1]}"
    want = expected(oracle, text)
    panels = _search_panels(ch, text)
    table = panels["table"]
    listed = [row[table.columns.index("event_id")] for row in table.rows]
    assert sorted(listed) == sorted(want) == sorted(ids(found(ch, text, limit=MAX_LIMIT)))
    broadcasts = {(e["tenant_id"], e["broadcast_id"]) for e in oracle if e["event_id"] in want}
    assert panels["stat"].rows == [(len(want), len(broadcasts))]
    assert sum(row[-1] for row in panels["timeseries"].rows) == len(want)
    assert _search_panels(ch, "o'brien")["stat"].rows == [(0, 0)]  # Grafana's sqlstring quoting


def test_times_are_rfc3339_or_ago() -> None:
    assert parse_time("2026-11-23T10:00:00+02:00", "--since") == 1_795_420_800_000
    assert parse_time("2026-11-23T08:00:00.5Z", "--since") == 1_795_420_800_500
    assert parse_time("90m", "--since", now_s=1_000_000) == (1_000_000 - 5400) * 1000


def herald(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "herald", *args], capture_output=True,
                          text=True, timeout=120, env=env)  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        ("",),
        ("  -- ",),
        ("poll", "--since", "yesterday"),
        ("poll", "--until", "2026-11-23"),
        ("poll", "--type", "opened"),
        ("poll", "--limit", "0"),
        ("poll", "--since", "1h", "--until", "2h"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], tmp_path: Path) -> None:
    result = herald("search", *args, env={**os.environ, "HERALD_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.startswith("herald: ") and len(result.stderr.splitlines()) == 1


def test_with_nothing_stored_the_answer_is_one_line(tmp_path: Path) -> None:
    result = herald("search", "poll", env={**os.environ, "HERALD_DATA_DIR": str(tmp_path)})
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("herald: no events stored under ")
    assert len(result.stderr.splitlines()) == 1 and "herald run" in result.stderr
    assert not (tmp_path / "clickhouse").exists()


def test_the_command_asks_the_running_process_or_opens_chdb_itself(
    pipeline_clickhouse_dir: Path, oracle: list[Event], broker: str, tmp_path: Path
) -> None:
    # A copy (its links are relative): this module's client holds the original open.
    shutil.copytree(pipeline_clickhouse_dir, tmp_path / "herald" / "clickhouse", symlinks=True)
    poll = a_poll(oracle)
    text = f"poll {poll['title'].split()[1]}"
    want = expected(oracle, text)
    process = Herald(tmp_path / "herald", broker).start()
    try:
        listed = herald("search", text, "--json", env=process.env)
        table = herald("search", text, "--tenant", poll["tenant_id"], env=process.env)
        nothing = herald("search", "xylophone", env=process.env)
    finally:
        process.stop()
    assert listed.returncode == 0, listed.stderr
    assert {orjson.loads(line)["event_id"] for line in listed.stdout.splitlines()} == want
    assert table.returncode == 0 and poll["title"] in table.stdout and "event_id" in table.stdout
    assert nothing.returncode == 0 and nothing.stdout == "no events match\n"
    # Nothing runs now: the command opens embedded ClickHouse itself.
    alone = herald("search", text, "--json", env=process.env)
    assert alone.returncode == 0 and alone.stdout == listed.stdout
