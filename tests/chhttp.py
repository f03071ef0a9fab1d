"""A ClickHouse HTTP endpoint backed by chDB, so Herald's server path runs against real SQL here.

No ClickHouse server runs on this machine (FACTS.md), and chDB is ClickHouse's engine as a
library: this module serves it on ClickHouse's HTTP interface, as much of it as
clickhouse-connect's HTTP client uses, in a process of its own (chDB allows one data dir per
process, and the tests' own process opens chDB too). `ChHttp` starts and steers it:

    with ChHttp(tmp_path / "clickhouse") as server:
        dsn = server.dsn            # http://default:@127.0.0.1:PORT
        server.switch("refuse")     # the port closed: connections are refused
        server.switch("drop")       # connections accepted and closed at once, unanswered
        server.switch("forward")    # requests run on chDB

What it serves, and what it cannot prove: docs/architecture.md, "Faults and tests".
"""

from __future__ import annotations

import gzip
import os
import select
import socket
import socketserver
import subprocess
import sys
import threading
from base64 import b64decode
from collections.abc import Callable
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import lz4.frame
from backports import zstd

from herald.kafka.local_broker import free_port
from tests.chhttp_engine import Answer, Engine, Request

MODES = ("refuse", "drop", "forward")
REPO = Path(__file__).resolve().parents[1]


class Endpoint(ThreadingHTTPServer):
    """The listening side. `switch` moves between the modes: refuse closes the port (and every
    open connection), drop accepts and closes, forward answers."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, engine: Engine, port: int) -> None:
        self.engine, self.port, self.mode = engine, port, "refuse"
        self.connections: set[socket.socket] = set()
        self._serving: threading.Thread | None = None

    def switch(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: one of {MODES}")
        self.mode = mode
        if mode == "refuse" and self._serving is not None:
            self.shutdown()
            self.server_close()
            for connection in list(self.connections):
                with suppress(OSError):  # closed by its client meanwhile
                    connection.shutdown(socket.SHUT_RDWR)
            self._serving = None
        elif mode != "refuse" and self._serving is None:
            socketserver.TCPServer.__init__(self, ("127.0.0.1", self.port), Handler)
            self._serving = threading.Thread(target=self.serve_forever, daemon=True)
            self._serving.start()

    def verify_request(self, request: object, client_address: object) -> bool:
        return self.mode == "forward"  # else socketserver closes the connection unanswered


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clickhouse-connect's connection pool expects
    server: Endpoint

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        self.server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: object) -> None:
        """Requests are logged by the engine, one line each."""

    def do_GET(self) -> None:
        params = parse_qsl(urlsplit(self.path).query, keep_blank_values=True)
        if urlsplit(self.path).path == "/ping" or not params:
            self._send(Answer(200, b"Ok.\n"))
        else:
            self._handle(b"", params)

    def do_POST(self) -> None:
        self._handle(self._body(), parse_qsl(urlsplit(self.path).query, keep_blank_values=True))

    def _handle(self, body: bytes, params: list[tuple[str, str]]) -> None:
        query = next((v for k, v in params if k == "query"), "").encode()
        text = query + b"\n" + body if query else body
        form = "multipart/form-data" in self.headers.get("Content-Type", "")
        request = Request(text, params, self.command, form, self._user(params))
        self._send(self.server.engine.answer(request))

    def _user(self, params: list[tuple[str, str]]) -> tuple[str, str]:
        """Basic authentication, X-ClickHouse-User/Key headers or user/password parameters."""
        basic = self.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            name, _, password = b64decode(basic[6:]).decode().partition(":")
            return name, password
        given = dict(params)
        return (self.headers.get("X-ClickHouse-User") or given.get("user", "default"),
                self.headers.get("X-ClickHouse-Key") or given.get("password", ""))  # fmt: skip

    def _send(self, answer: Answer) -> None:
        if self.server.mode != "forward":  # switched while this connection was open
            self.close_connection = True
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            raw = b"".join(chunks)
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        return _decompress(raw, self.headers.get("Content-Encoding", ""))


def _decompress(raw: bytes, encoding: str) -> bytes:
    """Content-Encoding as clickhouse-connect writes it (lz4 and zstd: one frame per block)."""
    if encoding in ("", "identity"):
        return raw
    if encoding == "lz4":
        parts = []
        while raw:
            frame = lz4.frame.LZ4FrameDecompressor()
            parts.append(frame.decompress(raw))
            raw = frame.unused_data
        return b"".join(parts)
    decoders: dict[str, Callable[[bytes], bytes]] = {
        "zstd": zstd.decompress,
        "gzip": gzip.decompress,
    }
    return decoders[encoding](raw)


# --- the tests' side -------------------------------------------------------------------------


class ChHttp:
    """The stand-in as a child process on a port of its own, steered through its stdin."""

    def __init__(self, path: Path, mode: str = "forward", access_management: bool = True,
                 password: str = "", timeout_s: float = 60) -> None:  # fmt: skip
        """`password`: of its one user, `default`; `access_management`: see
        tests.chhttp_engine.Engine."""
        self.path, self.mode, self.timeout_s = path.resolve(), mode, timeout_s
        self.access_management, self.password = access_management, password
        self.port = free_port()
        self.log_path = self.path.parent / f"{self.path.name}-chhttp.log"
        self._proc: subprocess.Popen[str] | None = None

    @property
    def dsn(self) -> str:
        """Herald's DSN for it."""
        return f"http://default:{self.password}@127.0.0.1:{self.port}"

    def __enter__(self) -> ChHttp:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tests.chhttp", str(self.path), str(self.port), self.mode,
                 str(int(self.access_management))],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO,
                env={**os.environ, "CHHTTP_PASSWORD": self.password},
            )  # fmt: skip
        self._reply(f"ready {self.mode}")
        return self

    def switch(self, mode: str) -> None:
        """Change mode; returns once the port behaves so."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(mode + "\n")
        self._proc.stdin.flush()
        self._reply(f"mode {mode}")
        self.mode = mode

    def _reply(self, expected: str) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], self.timeout_s)
        line = self._proc.stdout.readline().strip() if ready else "(nothing)"
        if line != expected:
            raise RuntimeError(f"the ClickHouse stand-in said {line!r}, not {expected!r}:"
                               f" {self.log_path.read_text(errors='replace')[-2000:]}")  # fmt: skip

    def log(self) -> list[str]:
        """One line per request it answered (and per access-control statement it ignored)."""
        return self.log_path.read_text(errors="replace").splitlines()

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None
            with suppress(BrokenPipeError):  # it died already: its log says why
                self._proc.stdin.close()  # end of its commands: it stops
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(30)


def main(path: str, port: str, mode: str, access_management: str) -> None:
    with open(Path(path).parent / f"{Path(path).name}-chhttp.log", "a", buffering=1) as log:
        engine = Engine(
            Path(path),
            lambda line: print(line, file=log),
            access_management == "1",
            os.environ["CHHTTP_PASSWORD"],
        )
        endpoint = Endpoint(engine, int(port))
        endpoint.switch(mode)
        print(f"ready {mode}", flush=True)
        for command in sys.stdin:
            endpoint.switch(command.strip())
            print(f"mode {command.strip()}", flush=True)
        endpoint.switch("refuse")
        engine.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
