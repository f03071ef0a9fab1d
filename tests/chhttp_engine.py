"""The SQL side of the ClickHouse HTTP stand-in (tests/chhttp.py): a request as ClickHouse's
HTTP interface reads it, run on chDB, and the answer as ClickHouse sends it back."""

from __future__ import annotations

import re
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import chdb
import orjson

# URL parameters that steer the request rather than set a ClickHouse setting.
TRANSPORT = frozenset({
    "query", "database", "default_format", "query_id", "session_id", "session_timeout",
    "session_check", "wait_end_of_query", "buffer_size", "client_protocol_version",
    "quota_key", "user", "password",
})  # fmt: skip
# Asked for, but not served: answered with NOT_IMPLEMENTED rather than ignored.
UNSERVED = {"compress": "compressed answers", "decompress": "compressed request bodies",
            "role": "roles (chDB has no access control)"}  # fmt: skip
# ClickHouse's HTTP status per error (src/Server/HTTP/exceptionCodeToHTTPStatus.cpp).
STATUS_OF = {
    **dict.fromkeys(("UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED",
                     "SET_NON_GRANTED_ROLE", "ACCESS_DENIED"), 403),
    **dict.fromkeys(("BAD_ARGUMENTS", "SYNTAX_ERROR", "CANNOT_PARSE_TEXT", "CANNOT_PARSE_NUMBER",
                     "CANNOT_PARSE_DATETIME", "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
                     "ILLEGAL_COLUMN", "THERE_IS_NO_COLUMN", "INCORRECT_DATA", "TYPE_MISMATCH",
                     "DUPLICATE_COLUMN"), 400),
    **dict.fromkeys(("UNKNOWN_TABLE", "UNKNOWN_FUNCTION", "UNKNOWN_IDENTIFIER", "UNKNOWN_TYPE",
                     "UNKNOWN_STORAGE", "UNKNOWN_DATABASE", "UNKNOWN_SETTING", "UNKNOWN_FORMAT",
                     "UNKNOWN_AGGREGATE_FUNCTION", "UNKNOWN_TYPE_OF_QUERY", "UNKNOWN_ROLE"), 404),
    "NOT_IMPLEMENTED": 501, "TIMEOUT_EXCEEDED": 408, "CANNOT_OPEN_FILE": 503,
    "REQUIRED_PASSWORD": 401,
}  # fmt: skip
_COMMENTS = re.compile(rb"\A(?:\s+|--[^\n]*\n?|/\*.*?\*/)*", re.DOTALL)
_RESULT_STATEMENT = re.compile(rb"\(*\s*(SELECT|WITH|SHOW|DESC|DESCRIBE|EXISTS|EXPLAIN|CHECK)\b",
                               re.IGNORECASE)  # fmt: skip
_TRAILING_FORMAT = re.compile(rb"\bFORMAT\s+(\w+)\s*;?\s*\Z", re.IGNORECASE)
_EXPLAIN = re.compile(rb"EXPLAIN\b", re.IGNORECASE)
_INSERT_FORMAT = re.compile(rb"\A(INSERT\s+INTO\b.*?)\s+FORMAT\s+(\w+)", re.IGNORECASE | re.DOTALL)
_SESSION_STATEMENT = re.compile(rb"(SET|USE)\s", re.IGNORECASE)
# Users, roles, grants, row policies, quotas and profiles: chDB refuses them all (ACCESS_DENIED).
_ACCESS_STATEMENT = re.compile(
    rb"(?:(?:CREATE|ALTER|DROP)\s+(?:ROLE|USER|ROW\s+POLICY|POLICY|QUOTA|SETTINGS\s+PROFILE|PROFILE)"
    rb"|GRANT|REVOKE)\s",
    re.IGNORECASE,
)
_ERROR_NAME = re.compile(r"\(([A-Z_]+)\)\s*$")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Refused(Exception):
    """A request the stand-in answers with a ClickHouse error of its own."""

    def __init__(self, code: int, name: str, text: str) -> None:
        super().__init__(f"Code: {code}. DB::Exception: {text}. ({name})")


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    text: bytes  # the `query` parameter, a newline, and the body (as ClickHouse reads them)
    params: list[tuple[str, str]]
    method: str
    form: bool = False  # multipart/form-data: the query and its parameters as form fields
    user: tuple[str, str] = ("default", "")  # the name and password the request gave

    def param(self, name: str, default: str = "") -> str:
        return next((v for k, v in self.params if k == name), default)

    def settings(self) -> list[tuple[str, str]]:
        """Settings in the order given, `readonly` last: ClickHouse checks a request's
        settings against those before it, so readonly=1 does not refuse its neighbours."""
        if self.form:
            raise Refused(48, "NOT_IMPLEMENTED", "the stand-in reads no form-encoded queries")
        for name in UNSERVED:
            if self.param(name) not in ("", "0"):
                raise Refused(48, "NOT_IMPLEMENTED", f"the stand-in serves no {UNSERVED[name]}")
        chosen = [(k, v) for k, v in self.params if k not in TRANSPORT and k not in UNSERVED
                  and not k.startswith("param_")]  # fmt: skip
        if self.method == "GET" and not any(k == "readonly" for k, _ in chosen):
            chosen.append(("readonly", "2"))  # as ClickHouse does for GET
        for name, _ in chosen:
            if not _IDENTIFIER.fullmatch(name):
                raise Refused(115, "UNKNOWN_SETTING", f"Unknown setting {name!r}")
        return sorted(chosen, key=lambda kv: kv[0] == "readonly")


class Engine:
    """Runs requests on chDB, one at a time, each on a connection of its own: per-request
    settings and the database never leak into the next request.

    chDB refuses users, roles, grants and row policies (ACCESS_DENIED). With
    `access_management` those statements are answered as done and logged as IGNORED (a server
    whose user may manage access); without, chDB's refusal is the answer (a user who may not).
    """

    def __init__(self, path: Path, log: Callable[[str], None], access_management: bool,
                 password: str) -> None:  # fmt: skip
        self.path, self.log, self.access_management = str(path), log, access_management
        self.password = password  # of the one user, `default`
        path.mkdir(parents=True, exist_ok=True)
        self._anchor = chdb.connect(self.path)  # keeps the engine up between requests
        zone, self.version = self._anchor.query("SELECT timezone(), version()", "TSV").bytes() \
            .decode().split()  # fmt: skip
        self.timezone = zone
        self._lock = threading.Lock()
        self._spool = path.parent / f"{path.name}-inserts"
        self._spool.mkdir(exist_ok=True)

    def close(self) -> None:
        self._anchor.close()

    def answer(self, request: Request) -> Answer:
        query_id = request.param("query_id") or str(uuid.uuid4())
        headers = {"X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Timezone": self.timezone,
                   "X-ClickHouse-Server-Display-Name": socket.gethostname()}  # fmt: skip
        try:
            with self._lock:
                body, summary, fmt = self._run(request)
        except Exception as exc:  # chDB's errors and the stand-in's own, as ClickHouse sends them
            # Some of chDB's messages end in its version already: the server's trailer replaces it.
            message = re.sub(r" \(version [^()]*\)$", "", str(exc).strip())
            name = _ERROR_NAME.search(message)
            code = re.match(r"Code: (\d+)", message)
            headers["X-ClickHouse-Exception-Code"] = code.group(1) if code else "1001"
            headers["Content-Type"] = "text/plain; charset=UTF-8"
            status = STATUS_OF.get(name.group(1), 500) if name else 500
            self.log(f"{request.method} {status} {_shown(request.text)}: {message}")
            # As the official server image words it (docker-compose.yml's ClickHouse).
            trailer = f"(version {self.version} (official build))"
            return Answer(status, f"{message} {trailer}\n".encode(), headers)
        headers["X-ClickHouse-Summary"] = orjson.dumps(summary).decode()
        if fmt is not None:
            headers["X-ClickHouse-Format"] = fmt
            headers["Content-Type"] = _content_type(fmt)
        self.log(f"{request.method} 200 {_shown(request.text)}")
        return Answer(200, body, headers)

    def _run(self, request: Request) -> tuple[bytes, dict[str, str], str | None]:
        """(the answer's body, its summary, its format when it is a result)."""
        if request.user != ("default", self.password):
            raise Refused(516, "AUTHENTICATION_FAILED", f"{request.user[0]}: Authentication failed:"
                          " password is incorrect, or there is no user with such name")  # fmt: skip
        text = request.text[_COMMENTS.match(request.text).end() :]  # type: ignore[union-attr]
        if _SESSION_STATEMENT.match(text):
            raise Refused(48, "NOT_IMPLEMENTED", "the stand-in keeps no session state (SET, USE)")
        settings = request.settings()
        binds = {k[6:]: v for k, v in request.params if k.startswith("param_")}
        default = request.param("default_format", "TabSeparated")
        sql, spooled = self._statement(text)
        connection = chdb.connect(self.path)
        try:
            database = request.param("database")
            if database:
                connection.query(f"USE {_quote_identifier(database)}", "TSV")
            for name, value in settings:
                connection.query(f"SET {name} = {_quote(value)}", "TSV")
            # The default format, as a server's: where a FORMAT clause wins, ClickHouse decides.
            result = connection.query(sql, default, params=binds)
        except Exception as exc:
            if self.access_management and _ACCESS_STATEMENT.match(text) \
                    and re.search(r"\((ACCESS_DENIED|UNKNOWN_ROLE)\)", str(exc)):  # fmt: skip
                self.log(f"IGNORED (chDB has no access control): {_shown(text)}")
                return b"", {}, None
            raise
        finally:
            connection.close()
            if spooled is not None:
                spooled.unlink()
        summary = {"read_rows": result.rows_read(), "read_bytes": result.bytes_read(),
                   "written_rows": result.rows_written(), "written_bytes": result.bytes_written(),
                   "elapsed_ns": int(result.elapsed() * 1e9)}  # fmt: skip
        fmt = None if spooled is not None else _result_format(text, default)
        return result.bytes() or b"", {k: str(v) for k, v in summary.items()}, fmt

    def _statement(self, text: bytes) -> tuple[bytes, Path | None]:
        """The SQL to run, and for an INSERT with data after its FORMAT clause the file that
        holds the data (ClickHouse: data starts after the first newline, if there is one, or
        after all the whitespace otherwise)."""
        found = _INSERT_FORMAT.match(text)
        if found is None:
            return text, None
        start = found.end()
        while start < len(text) and text[start : start + 1].isspace():
            start += 1
            if text[start - 1 : start] == b"\n":
                break
        spooled = self._spool / f"{uuid.uuid4().hex}.data"
        spooled.write_bytes(text[start:])
        head, fmt = found.group(1), found.group(2)
        return head + f" FROM INFILE {_quote(str(spooled))} FORMAT ".encode() + fmt, spooled


def _result_format(text: bytes, default: str) -> str | None:
    """X-ClickHouse-Format: the statement's FORMAT clause (EXPLAIN's belongs to the query it
    explains), else the default; None for a statement without a result (DDL, INSERT)."""
    found = _TRAILING_FORMAT.search(text)
    if found and not _EXPLAIN.match(text):
        return found.group(1).decode()
    return default if found or _RESULT_STATEMENT.match(text) else None


def _content_type(fmt: str) -> str:
    if fmt.startswith(("Native", "RowBinary", "Parquet", "Arrow")):
        return "application/octet-stream"
    if fmt.startswith("JSON"):
        return "application/json; charset=UTF-8"
    if fmt.startswith(("TabSeparated", "TSV")):
        return "text/tab-separated-values; charset=UTF-8"
    return "text/plain; charset=UTF-8"


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _shown(text: bytes) -> str:
    """A request on one line for the log: an INSERT without its data."""
    insert = _INSERT_FORMAT.match(text)
    shown = insert.group(0) if insert else text[:300]
    return " ".join(shown.decode(errors="replace").split())
