"""Herald's server path over HTTP, against real SQL: the stand-in (tests.chhttp) serves chDB
on ClickHouse's HTTP interface, and Herald talks to it with clickhouse-connect's HTTP client,
as it would to the ClickHouse server of docker-compose.yml."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

import clickhouse_connect
import orjson
import pytest
from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from herald.dashboards.boards import DASHBOARDS
from herald.dashboards.macros import expand
from herald.dashboards.runner import Frame, choose_all, data_time_range, resolve_variables, run_sql
from herald.load.simulate import Scenario, generate
from herald.load.totals import expected_totals
from herald.sinks.clickhouse import connect
from herald.sinks.migrations import MIGRATIONS, migrate
from tests.chhttp import ChHttp
from tests.e2e import assert_exact, produce
from tests.harness import Herald
from tests.test_cli import herald
from tests.test_dashboards_data import fill_sample_data


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ChHttp]:
    with ChHttp(tmp_path / "server") as started:
        yield started


def over_http(server: ChHttp, *args: str) -> tuple[int, str, str]:
    done = herald(*args, HERALD_CLICKHOUSE_DSN=server.dsn,
                  HERALD_DATA_DIR=str(server.path.parent / "cli"))  # fmt: skip
    return done.returncode, done.stdout, done.stderr


NONE: Mapping[str, str] = MappingProxyType({})


def ask(server: ChHttp, query: str, data: bytes | None = None,
        params: Mapping[str, str] = NONE, headers: Mapping[str, str] = NONE,
        ) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """A plain HTTP request: GET without data, else POST."""
    url = f"http://127.0.0.1:{server.port}/?{urllib.parse.urlencode({'query': query, **params})}"
    request = urllib.request.Request(url, data, dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers), refused.read()


@pytest.mark.parametrize("compress", ["lz4", "zstd", "gzip", False])
def test_the_stand_in_speaks_clickhouse_http(server: ChHttp, compress: str | bool) -> None:
    """What tests.chhttp serves, seen from clickhouse-connect and from plain HTTP."""
    client = clickhouse_connect.get_client(dsn=server.dsn, interface="http", compress=compress)
    try:
        client.command("CREATE TABLE t (n UInt32, m Map(UInt16, UInt64)) ENGINE = Memory")
        client.insert("t", [[i, {i: 2 * i}] for i in range(5000)], column_names=["n", "m"])
        assert client.query("SELECT sum(n), sum(m[toUInt16(n)]) FROM t").result_rows == [
            (12497500, 24995000)]  # fmt: skip
        assert client.command("SELECT count() FROM t WHERE n > {k:UInt32}", {"k": 4000}) == 999
        assert client.command("SELECT 1 WHERE 0") == ""  # a result, empty (X-ClickHouse-Format)
        with pytest.raises(DatabaseError, match="UNKNOWN_TABLE"):
            client.query("SELECT * FROM nope")
    finally:
        client.close()

    assert ask(server, "SELECT 1")[::2] == (200, b"1\n")  # GET
    code, headers, body = ask(server, "CREATE TABLE u (n UInt8) ENGINE = Memory")
    assert code == 500 and headers["X-ClickHouse-Exception-Code"] == "164", body  # GET: readonly
    code, headers, body = ask(server, "SELECT * FROM nope", b"")
    assert (code, headers["X-ClickHouse-Exception-Code"]) == (404, "60")
    assert body.endswith(b"(UNKNOWN_TABLE) (version 26.9.2.1 (official build))\n"), body
    assert ask(server, "SELECT 2 AS x FORMAT JSONEachRow", b"")[::2] == (200, b'{"x":2}\n')
    assert ask(server, "INSERT INTO t FORMAT TSV", b"7\t{}\n")[0] == 200
    assert ask(server, "SELECT count() FROM t WHERE n = 7", b"")[2] == b"2\n"
    for refused in ("SET max_threads = 1", "USE system"):
        code, _, body = ask(server, refused, b"")
        assert code == 501 and b"no session state" in body, body
    code, _, body = ask(server, "SELECT 1", b"x", headers={"Content-Type": "multipart/form-data"})
    assert code == 501 and b"form-encoded" in body, body
    code, _, body = ask(server, "SELECT 1", b"", {"decompress": "1"})
    assert code == 501 and b"compressed request bodies" in body, body
    assert (
        ask(server, "SELECT 1", b"", headers={"Authorization": "Basic Z3Vlc3M6"})[0] == 403
    )  # guess:
    assert ask(server, "SELECT 1", b"", headers={"X-ClickHouse-User": "guess"})[0] == 403
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/ping", timeout=30) as pong:
        assert pong.read() == b"Ok.\n"


def test_the_stand_in_refuses_drops_and_forwards_on_one_port(server: ChHttp) -> None:
    server.switch("refuse")
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        ask(server, "SELECT 1")
    server.switch("drop")
    with pytest.raises(http.client.RemoteDisconnected):
        ask(server, "SELECT 1")
    server.switch("forward")
    assert ask(server, "SELECT 1")[0] == 200


def test_migrate_and_query_over_http(server: ChHttp, tmp_path: Path) -> None:
    code, out, err = over_http(server, "db", "migrate")
    assert code == 0 and err == "", err
    assert out.split() == [m.label for m in MIGRATIONS]
    # A server runs the access-control steps (chDB cannot: the stand-in records them).
    ignored = [line for line in server.log() if line.startswith("IGNORED")]
    assert len(ignored) == sum(m.server_only for m in MIGRATIONS) > 0, ignored
    assert over_http(server, "db", "migrate") == (0, "schema is up to date\n", "")

    code, out, err = over_http(server, "query", "SELECT count() AS n FROM broadcast_summary"
                               " FORMAT JSONEachRow")  # fmt: skip
    assert (code, err) == (0, "") and int(orjson.loads(out)["n"]) == 0, out
    embedded_env = {"HERALD_DATA_DIR": str(tmp_path / "embedded")}
    pretty = herald("query", "SELECT 1 AS one", **embedded_env)
    assert over_http(server, "query", "SELECT 1 AS one") == (0, pretty.stdout, "")
    assert "one" in pretty.stdout
    code, _, err = over_http(server, "query", "DROP TABLE broadcasts")
    assert code == 1 and err.startswith("herald: refused: queries are read-only"), err

    # ClickHouse's own errors read the same as with embedded chDB: one line, no url or version.
    for wrong in ("SELECT * FROM nope", "SELECT 1 SETTINGS max_threads = 1"):
        code, _, err = over_http(server, "query", wrong)
        embedded = herald("query", wrong, **embedded_env)
        assert code == embedded.returncode == 1
        assert err == embedded.stderr and err.count("\n") == 1, (err, embedded.stderr)


def test_migrate_refused_by_the_server_is_one_line(tmp_path: Path) -> None:
    """A server user without access management: the tenancy steps are refused."""
    with ChHttp(tmp_path / "server", access_management=False) as server:
        code, out, err = over_http(server, "db", "migrate")
    assert code == 1 and out == "", out
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("herald: migration 0030_tenant_role failed: Not enough privileges"), err


def test_sink_on_a_server_refusing_a_migration_exits_in_one_line(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """`herald sink` migrates before it starts: a step the server refuses is one line, exit 1."""
    with ChHttp(tmp_path / "server", access_management=False) as server:
        sink = Herald(tmp_path / "sink", kafka_bootstrap, role="sink", clickhouse_dsn=server.dsn)
        assert sink.launch().proc is not None and sink.proc.wait(120) == 1
    logged = sink.log_path.read_text()
    assert "Traceback" not in logged, logged
    assert logged.strip().splitlines()[-1].startswith(
        "herald: migration 0030_tenant_role failed: Not enough privileges"), logged  # fmt: skip


def test_wrong_password_fails_at_once_in_one_line(tmp_path: Path) -> None:
    with ChHttp(tmp_path / "server", password="secret") as server:
        done = herald("db", "migrate", HERALD_CLICKHOUSE_DSN=server.dsn.replace("secret", "guess"),
                      HERALD_DATA_DIR=str(tmp_path / "cli"))  # fmt: skip
    assert done.returncode == 1 and "guess" not in done.stderr
    assert done.stderr == (f"herald: ClickHouse at 127.0.0.1:{server.port} refused the connection:"
                           " Authentication failed: password is incorrect, or there is no user"
                           " with such name\n")  # fmt: skip


def every_panel(client: Client) -> dict[str, tuple[list[str], list[str], list[str]]]:
    """Each dashboard panel's columns, types and rows (as text, sorted) with variables at All."""
    start, end = data_time_range(client)
    frames: dict[str, Frame] = {}
    for dashboard in DASHBOARDS:
        ctx = resolve_variables(client, dashboard, start, end, choose_all)
        for panel in dashboard.panels:
            frames[f"{dashboard.uid}/{panel.title}"] = run_sql(client, expand(panel.sql, ctx))
    return {name: (f.columns, f.types, sorted(map(repr, f.rows))) for name, f in frames.items()}


# Commands that read ClickHouse, as people run them (each must find something in the sample).
SINCE = ("--since", "2026-11-01T00:00:00Z")  # the sample's hour is in the past; updated_at is now()
READS = (("search", "timeout", *SINCE, "--json"), ("search", "acme-b1", *SINCE, "--tenant", "acme"),
         ("escalations", "--all"),
         ("query", "SELECT * EXCEPT updated_at FROM region_summary ORDER BY ALL"))  # fmt: skip


def test_dashboards_and_commands_read_the_same_over_http_as_from_chdb(
    server: ChHttp, tmp_path: Path
) -> None:
    """The same rows written with the sink's insert to chDB and over HTTP: every panel of
    every dashboard, and `herald search`, `escalations` and `query`, show the same over both
    (types, time zones and maps included)."""
    panels, printed = [], []
    for dsn in (f"chdb://{tmp_path / 'embedded'}", server.dsn):
        client = connect(dsn)
        try:
            migrate(client)
            fill_sample_data(client)
            panels.append(every_panel(client))
        finally:
            client.close()  # chDB: the commands below open it in their own process
        env = {"HERALD_CLICKHOUSE_DSN": dsn, "HERALD_DATA_DIR": str(tmp_path / "cli")}
        printed.append([herald(*args, **env) for args in READS])
    embedded, over_server = panels
    assert over_server == embedded
    empty = [name for name, (_, _, rows) in embedded.items() if not rows]
    assert len(empty) < len(embedded) / 10, empty
    for args, here, there in zip(READS, *printed, strict=True):
        assert (there.returncode, there.stdout, there.stderr) == (0, here.stdout, ""), args
        assert here.stdout.count("\n") > 2, (args, here.stdout)


@pytest.mark.slow
def test_worker_and_sink_over_http_are_exact(broker: str, server: ChHttp, tmp_path: Path) -> None:
    """`herald worker` and `herald sink` as separate processes (SPEC §7), the sink writing to
    the server over HTTP: every table and view exact, and `herald query` reads them there."""
    messages = generate(Scenario(seed=31, invalid=10))
    totals = expected_totals(messages)
    produce(broker, messages)
    worker = Herald(tmp_path / "worker", broker, role="worker").start()
    sink = Herald(tmp_path / "sink", broker, role="sink", clickhouse_dsn=server.dsn).start()
    try:
        assert_exact(sink, totals)
    finally:
        worker.stop()
        sink.stop()
    assert not (tmp_path / "sink" / "clickhouse").exists(), "the sink wrote to chDB of its own"
    inserts = {line.split("INSERT INTO ")[1].split()[0].strip("`") for line in server.log()
               if " 200 INSERT INTO " in line}  # fmt: skip
    assert {"broadcast_stats_1m", "invalid_events", "events_raw"} <= inserts, inserts

    tenant = sorted(totals.by_broadcast)[0][0]
    code, out, err = over_http(server, "query", "--tenant", tenant, "SELECT DISTINCT tenant_id"
                               " FROM broadcast_summary FORMAT TSV")  # fmt: skip
    assert (code, out, err) == (0, f"{tenant}\n", "")
    code, out, _ = over_http(server, "query", "SELECT uniqExact(tenant_id) FROM broadcast_summary"
                             " FORMAT TSV")  # fmt: skip
    assert int(out) == len({t for t, _ in totals.by_broadcast}) > 1
