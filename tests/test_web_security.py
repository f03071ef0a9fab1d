"""The running `herald run`'s web pages as an intruder and as a tenant meet them: /query is
read-only, /query, /report and (when asked) /metrics want the bearer token, the port binds
127.0.0.1, and `--tenant` shows one tenant's rows only. Real broker, real process, real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from herald.kafka import local_broker
from herald.load.simulate import Scenario, generate
from herald.load.totals import expected_totals
from herald.processes.child import HeraldProcess
from tests.e2e import produce
from tests.harness import Herald, wait_for

TOKEN = "s3cret-Token-for-tests"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeraldProcess]:
    """A `herald run` with a token (also on /metrics) over two tenants' broadcasts."""
    work = tmp_path_factory.mktemp("websec")
    broker = local_broker.start(work / "broker", port=local_broker.free_port())
    try:
        messages = generate(Scenario(tenants=2, broadcasts=4, users_per_broadcast=20))
        produce(broker.bootstrap, messages)
        delivered = expected_totals(messages).grand_total()["delivered"]
        process = Herald(work / "herald", broker.bootstrap, idle_partition_s=2,
                         web_token=TOKEN, web_token_metrics="true").start()  # fmt: skip
        try:
            wait_for(lambda: process.query("SELECT sum(delivered) AS n FROM broadcast_summary")
                     == [{"n": delivered}], 120, "every delivery counted")  # fmt: skip
            yield process
        finally:
            process.stop()
    finally:
        local_broker.stop(work / "broker")


def herald(
    process: HeraldProcess, *args: str, token: str | None = TOKEN
) -> subprocess.CompletedProcess[str]:
    """The CLI as a user of this process runs it, with `token` as HERALD_WEB_TOKEN."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update({k: v for k, v in process.env.items() if k.startswith("HERALD_")})
    env.pop("HERALD_WEB_TOKEN")
    if token is not None:
        env["HERALD_WEB_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "herald", *args], capture_output=True,
                          text=True, timeout=120, env=env)  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("herald: ") and len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr and TOKEN not in result.stderr
    return result.stderr.strip()


def tenants(process: HeraldProcess) -> list[str]:
    rows = process.query("SELECT DISTINCT tenant_id FROM broadcasts ORDER BY tenant_id")
    return [str(r["tenant_id"]) for r in rows]


def test_writes_are_refused_and_the_table_stays(running: HeraldProcess) -> None:
    before = running.query("SELECT count() AS n FROM broadcasts")
    for sql, verb in [
        ("DROP TABLE herald.broadcasts", "DROP"),
        ("CREATE TABLE herald.intruder (a Int8) ENGINE = Memory", "CREATE"),
        ("ALTER TABLE herald.broadcasts DELETE WHERE 1", "ALTER"),
        ("INSERT INTO herald.broadcasts (tenant_id) VALUES ('x')", "INSERT"),
    ]:
        message = one_line_error(herald(running, "query", sql))
        assert message.startswith("herald: refused: queries are read-only") and verb in message
    assert running.query("SELECT count() AS n FROM broadcasts") == before != [{"n": 0}]
    assert running.query("EXISTS TABLE herald.intruder") == [{"result": 0}]
    message = one_line_error(herald(running, "query", "SELECT 1 SETTINGS readonly = 0"))
    assert message == ("herald: refused: queries are read-only (Cannot modify 'readonly'"
                       " setting in readonly mode)")  # fmt: skip


def test_select_works_with_the_token(running: HeraldProcess) -> None:
    result = herald(running, "query", "SELECT count() AS n FROM broadcasts FORMAT JSONEachRow")
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout)["n"] > 0


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_a_missing_or_wrong_token_is_refused(running: HeraldProcess, token: str | None) -> None:
    for args in (("query", "SELECT 1"), ("report", "--out", "/tmp/never.html")):
        message = one_line_error(herald(running, *args, token=token))
        assert message.startswith("herald: unauthorized: this Herald process requires")
    assert not Path("/tmp/never.html").exists()
    for page in ("/query", "/report", "/metrics"):
        assert http_status(running, page, token) == 401
    assert http_status(running, "/metrics", TOKEN) == 200
    assert http_status(running, "/health", None) == 200


def http_status(process: HeraldProcess, page: str, token: str | None) -> int:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    data = b"SELECT 1" if page.split("?")[0] in ("/query", "/report") else None
    url = f"http://127.0.0.1:{process.settings.web_port}{page}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=30) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        assert TOKEN not in exc.read().decode()
        return exc.code


def test_faust_table_pages_are_off(running: HeraldProcess) -> None:
    for page in ("/table/", "/router/"):
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{running.settings.web_port}{page}")
        assert missing.value.code == 404


def test_the_token_is_never_shown(running: HeraldProcess) -> None:
    assert TOKEN not in herald(running, "--help").stdout
    status = herald(running, "status")
    assert status.returncode == 0, status.stderr
    assert TOKEN not in status.stdout + status.stderr
    assert "open escalations: " in status.stdout and "unauthorized" not in status.stdout
    assert TOKEN not in running.log_path.read_text()


def test_the_web_port_binds_loopback_only(running: HeraldProcess) -> None:
    port = f"{running.settings.web_port:04X}"
    listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                 if line.split()[3] == "0A" and line.split()[1].endswith(f":{port}")]  # fmt: skip
    assert listening == [f"0100007F:{port}"]


def test_a_tenant_query_naming_another_tenant_returns_nothing(running: HeraldProcess) -> None:
    mine, other = tenants(running)
    sql = ("SELECT tenant_id, broadcast_id FROM broadcast_summary WHERE tenant_id = '{}'"
           " FORMAT JSONEachRow")  # fmt: skip
    result = herald(running, "query", "--tenant", mine, sql.format(other))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    result = herald(running, "query", "--tenant", mine, sql.format(mine))
    assert {orjson.loads(line)["tenant_id"] for line in result.stdout.splitlines()} == {mine}
    empty = herald(running, "query", "--tenant", "", sql.format(other))
    assert empty.returncode == 2 and empty.stderr.startswith("herald: --tenant ''"), empty.stderr
    assert http_status(running, "/query?tenant=", TOKEN) == 400  # not "every tenant"


def test_report_and_search_for_a_tenant_hold_no_other_tenants_ids(
    running: HeraldProcess, tmp_path: Path
) -> None:
    mine, other = tenants(running)
    ids = running.query("SELECT tenant_id, broadcast_id FROM broadcasts")
    theirs = {str(r["broadcast_id"]) for r in ids if r["tenant_id"] == other}
    out = tmp_path / "mine.html"
    assert herald(running, "report", "--tenant", mine, "--out", str(out)).returncode == 0
    html = out.read_text()
    assert any(str(r["broadcast_id"]) in html for r in ids if r["tenant_id"] == mine)
    assert other not in html and not any(b in html for b in theirs)
    found = herald(running, "search", "--tenant", mine, "--json", "--limit", "1000", "announcement")
    assert found.returncode == 0, found.stderr
    hits = [orjson.loads(line) for line in found.stdout.splitlines()]
    assert hits and {h["tenant_id"] for h in hits} == {mine}
