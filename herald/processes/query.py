"""`herald query` and `herald report`: read-only SQL against the configured ClickHouse.

In embedded mode the running `herald run` holds chDB (one process per data directory), so the
SQL goes to its `/query` page (with HERALD_WEB_TOKEN when set); with no such process running,
chDB is opened here directly. Either way it runs on a read-only client, scoped to a tenant
when asked (herald.sinks.readers).
"""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
from clickhouse_connect.driver import Client

from herald.config import Settings
from herald.errors import HeraldError
from herald.processes import webtoken
from herald.sinks import readers

DEFAULT_FORMAT = "PrettyCompactMonoBlock"
_HAS_FORMAT = re.compile(r"\bFORMAT\s+\w+\s*;?\s*$", re.IGNORECASE)


def with_format(sql: str) -> str:
    sql = sql.strip().rstrip(";")
    return sql if _HAS_FORMAT.search(sql) else f"{sql} FORMAT {DEFAULT_FORMAT}"


def run_query(settings: Settings, sql: str, tenant: str | None = None) -> str:
    """ClickHouse's answer to one read statement (herald.sinks.readers: read-only, and with
    `tenant` only that tenant's rows)."""
    sql = with_format(sql)
    if tenant is not None:
        readers.check_tenant(tenant)  # here too: an empty one must not mean "every tenant"
    if settings.embedded_clickhouse:
        answer = ask_running_process(settings, sql, tenant)
        if answer is not None:
            return answer
    return answer_here(settings.dsn, sql, tenant).decode()


def answer_here(dsn: str, sql: str, tenant: str | None) -> bytes:
    """Read `sql` on a read-only client of this process's own."""
    with readers.reader(dsn, tenant) as client:
        return readers.read(client, sql)


class Readers:
    """The running process's read-only clients per tenant (None: every tenant), kept open
    between requests: opening a chDB client (it reads its settings) cost more than most
    queries, and `herald bench` polls a count every second. A client serves one request at
    a time; at most `keep` wait idle, the oldest closed first."""

    def __init__(self, dsn: str, keep: int = 8) -> None:
        self.dsn, self.keep = dsn, keep
        self._idle: list[tuple[str | None, Client]] = []
        self._lock = threading.Lock()

    def answer(self, sql: str, tenant: str | None) -> bytes:
        client = self._take(tenant)
        try:
            answer = readers.read(client, sql)
        except BaseException:
            client.close()  # in whatever state the error left it
            raise
        self._give_back(tenant, client)
        return answer

    def _take(self, tenant: str | None) -> Client:
        with self._lock:
            for i, (owner, client) in enumerate(self._idle):
                if owner == tenant:
                    del self._idle[i]
                    return client
        return readers.open_reader(self.dsn, tenant)

    def _give_back(self, tenant: str | None, client: Client) -> None:
        with self._lock:
            self._idle.append((tenant, client))
            surplus = self._idle[: -self.keep]
            del self._idle[: -self.keep]
        for _, old in surplus:
            old.close()


def ask_running_process(settings: Settings, sql: str, tenant: str | None = None) -> str | None:
    """The answer of the running `herald run`, or None when none listens."""
    return post_to_running_process(settings, _page("/query", tenant), sql.encode())


def _page(path: str, tenant: str | None) -> str:
    return path if tenant is None else f"{path}?tenant={urllib.parse.quote(tenant)}"


def post_to_running_process(settings: Settings, page: str, body: bytes) -> str | None:
    """POST to a page of the running `herald run`; None when no such process listens."""
    url = f"http://127.0.0.1:{settings.web_port}{page}"
    request = urllib.request.Request(
        url, data=body, method="POST", headers=webtoken.headers(settings)
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return bytes(response.read()).decode()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            message = orjson.loads(body)["error"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            message = f"HTTP {exc.code} from {url}"
        raise HeraldError(message) from None
    except (urllib.error.URLError, ConnectionError):
        return None


def escalations_sql(history: bool, tenant: str | None) -> str:
    """`herald escalations`: the open ones (rule, subject, level, since, value against
    threshold), or with `history` every transition."""
    where = "" if tenant is None else f" WHERE tenant_id = {quote(tenant)}"
    if history:
        return ("SELECT occurred_at, tenant_id, rule, subject, state, level, round(value, 4)"
                " AS value, threshold, opened_at, escalation_id FROM escalations FINAL"
                f"{where} ORDER BY occurred_at, rule, subject, level")  # fmt: skip
    return ("SELECT tenant_id, rule, subject, level, opened_at AS since, round(value, 4) AS"
            " value, threshold, occurred_at AS changed, message FROM open_escalations"
            f"{where} ORDER BY level DESC, since, rule, subject")  # fmt: skip


def quote(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def write_report(settings: Settings, path: Path, tenant: str | None = None) -> Path:
    """`herald report`: by the running process in embedded mode, else here."""
    path = path.resolve()
    if tenant is not None:
        readers.check_tenant(tenant)
    if settings.embedded_clickhouse:
        page = _page("/report", tenant)
        if post_to_running_process(settings, page, str(path).encode()) is not None:
            return path
    return report_here(settings.dsn, path, tenant)


def report_here(dsn: str, path: Path, tenant: str | None) -> Path:
    """Write the report from a read-only client of this process's own (scoped to `tenant`)."""
    from herald.dashboards.report import render_report

    with readers.reader(dsn, tenant) as client:
        return render_report(client, path, tenant)
