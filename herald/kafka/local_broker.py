"""The local single-node Kafka broker: jars from Maven Central, KRaft, one JVM per data dir.

Layout under `<data_dir>/kafka/`: server.properties and log4j2.properties (rewritten on every
start), data/ (the log dirs, formatted once), server.log, kafka.pid; with SASL_SSL also tls/
and scram-users (local_security.py).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herald.config import Settings
from herald.errors import HeraldError, ServiceUnavailable
from herald.kafka import local_security as security
from herald.kafka.admin import wait_for_broker
from herald.kafka.jars import Progress, ensure_jars, kafka_version, locked, say, tail
from herald.kafka.local_security import Login
from herald.kafka.templates import LOG4J2, server_properties

JVM_OPTS = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


@dataclass(frozen=True)
class Broker:
    bootstrap: str
    pid: int
    log_path: Path
    already_running: bool = False
    ca_file: Path | None = None  # SASL_SSL: the CA clients trust (HERALD_KAFKA_SSL_CAFILE)

    def describe(self) -> str:
        """Started or found, and how to reach it: address, security, pid and log (never a
        password)."""
        state = "already running" if self.already_running else "started"
        secured = f" (SASL_SSL, CA {self.ca_file})" if self.ca_file else ""
        return f"{state} at {self.bootstrap}{secured} (pid {self.pid}, log {self.log_path})"


def start(
    data_dir: Path,
    port: int = 9092,
    timeout_s: float = 90,
    progress: Progress | None = None,
    login: Login | None = None,
) -> Broker:
    """Start this data dir's broker on 127.0.0.1:`port`, or return it if it already runs.

    Plain text, or with `login` (`local_security.login_of(settings)`) one SASL_SSL listener
    that accepts that SCRAM login. The first call on a machine fetches the jars
    (`ensure_jars`); `timeout_s` bounds the wait for the started broker to answer.
    """
    kdir = data_dir.expanduser().resolve() / "kafka"
    kdir.mkdir(parents=True, exist_ok=True)
    with locked(kdir / "start.lock"):
        pid = _running_pid(kdir)
        if pid is not None:
            return _attach(kdir, pid, port, timeout_s, login)
        _require_free(port, "Kafka")
        libs = ensure_jars(progress)
        _write_config(kdir, port, login)
        _format_once(kdir, libs, progress, login)
        return _launch(kdir, libs, port, timeout_s, progress, login)


def stop(data_dir: Path, timeout_s: float = 30) -> bool:
    """Stop this data dir's broker: SIGTERM, then SIGKILL after `timeout_s`. False if none ran."""
    kdir = data_dir.expanduser().resolve() / "kafka"
    pid = _running_pid(kdir)
    if pid is not None:
        # It may exit by itself between the check and a signal: then there is nothing to do.
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            if not _wait_gone(kdir, timeout_s):
                os.kill(pid, signal.SIGKILL)
                _wait_gone(kdir, 10)
    (kdir / "kafka.pid").unlink(missing_ok=True)
    return pid is not None


def status(data_dir: Path, port: int = 9092, login: Login | None = None) -> str:
    """One line: whether this data dir's broker runs, where, and whether it answers (a
    SASL_SSL broker is asked with `login`)."""
    kdir = data_dir.expanduser().resolve() / "kafka"
    pid = _running_pid(kdir)
    if pid is None:
        taken = "" if _port_free(port) else f"; port {port} is taken by another process"
        return f"Kafka is not running from {kdir}{taken}"
    name, running = _listener(kdir) or ("PLAINTEXT", port)
    where = f"127.0.0.1:{running}" + (f" ({name})" if name != "PLAINTEXT" else "")
    try:
        _run(wait_for_broker(_client(kdir, running, login), timeout_s=2))
    except HeraldError as exc:  # unreachable, or a login this broker refuses
        return (f"Kafka (pid {pid}) runs but does not answer at {where}: {exc}; log: "
                f"{kdir / 'server.log'}")  # fmt: skip
    return f"Kafka {kafka_version()} is running at {where} (pid {pid}, data {kdir})"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- config and storage ---------------------------------------------------------------------


def _write_config(kdir: Path, port: int, login: Login | None) -> None:
    # The controller port is kept across starts when still free. Its address is only in this
    # file (a static quorum), so moving it when it is taken is safe.
    controller = _configured_port(kdir, "CONTROLLER")
    if controller is None or controller == port or not _port_free(controller):
        controller = free_port()
    listener = None
    if login is not None:
        security.ensure_certificates(kdir)
        listener = security.listener_properties(kdir, security.broker_login(kdir, login.mechanism))
    # With SASL_SSL it holds the broker's own password: readable by its owner only.
    security.write_private(kdir / "server.properties",
                           server_properties(kdir, port, controller, listener).encode())
    (kdir / "log4j2.properties").write_text(LOG4J2)


def _configured_port(kdir: Path, listener: str) -> int | None:
    try:
        text = (kdir / "server.properties").read_text()
    except FileNotFoundError:
        return None
    match = re.search(rf"^listeners=.*\b{listener}://[^,:]+:(\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _listener(kdir: Path) -> tuple[str, int] | None:
    """The clients' listener of the configured broker: its name and port."""
    for name in ("PLAINTEXT", security.LISTENER):
        port = _configured_port(kdir, name)
        if port is not None:
            return name, port
    return None


def _format_once(kdir: Path, libs: Path, progress: Progress | None, login: Login | None) -> None:
    users = kdir / "scram-users"  # their names, stored when the storage was formatted
    if (kdir / "data" / "meta.properties").exists():
        known = users.read_text().split() if users.exists() else []
        if login is not None and login.username not in known:
            raise HeraldError(
                f"the Kafka storage in {kdir / 'data'} was formatted without a SCRAM user "
                f"{login.username!r}: stop the broker and delete that directory to format it "
                "again (its topics are lost), or use another HERALD_DATA_DIR"
            )
        return
    say(progress, f"formatting Kafka storage in {kdir / 'data'}")
    logins = [] if login is None else [login, security.broker_login(kdir, login.mechanism)]
    args = [
        "kafka.tools.StorageTool", "format", "--cluster-id", _cluster_id(),
        "--config", str(kdir / "server.properties"), *security.scram_arguments(logins),
    ]  # fmt: skip
    # The arguments go through a file only its owner reads: passwords stay off `ps`.
    argfile = kdir / "format.args"
    security.write_private(argfile, "".join(f"{_quoted(arg)}\n" for arg in args).encode())
    try:
        done = subprocess.run([*_java(kdir, libs), f"@{argfile}"], capture_output=True,
                              text=True, timeout=120)  # fmt: skip
    finally:
        argfile.unlink()
    if done.returncode != 0:
        output = done.stdout + done.stderr
        for secret in logins:
            output = output.replace(secret.password.get_secret_value(), "***")
        raise HeraldError(f"formatting Kafka storage failed: {tail(output)}")
    users.write_text("".join(f"{secret.username}\n" for secret in logins))


def _quoted(arg: str) -> str:
    """One argument of a java @argfile: quoted, its backslashes and quotes escaped."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _cluster_id() -> str:
    """What `StorageTool random-uuid` prints (Kafka's Uuid), without starting a JVM for it."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka rejects ids that look like a command-line flag
            return text


def _java(kdir: Path, libs: Path) -> list[str]:
    logging = f"-Dlog4j2.configurationFile={kdir / 'log4j2.properties'}"
    return ["java", *JVM_OPTS, logging, "-cp", str(libs / "*")]


# --- process --------------------------------------------------------------------------------


def _launch(
    kdir: Path, libs: Path, port: int, timeout_s: float, progress: Progress | None,
    login: Login | None,
) -> Broker:
    log_path = kdir / "server.log"
    if log_path.exists():
        log_path.replace(kdir / "server.log.1")  # keep the previous run's log, once
    say(progress, f"starting Kafka on 127.0.0.1:{port} (log: {log_path})")
    java = [*_java(kdir, libs), "kafka.Kafka", str(kdir / "server.properties")]
    # A shell starts the JVM in the background and exits: the broker is nobody's child, so
    # it outlives the CLI (and its Ctrl-C, through the new session) and never becomes a
    # zombie of a long-lived caller such as pytest.
    launcher = '"$@" >>"$0" 2>&1 </dev/null & echo $!'
    shell = subprocess.run(
        ["sh", "-c", launcher, str(log_path), *java],
        capture_output=True,
        text=True,
        cwd=kdir,
        start_new_session=True,
        check=True,
    )
    pid = int(shell.stdout)
    (kdir / "kafka.pid").write_text(f"{pid}\n")
    try:
        _await_answer(kdir, pid, port, timeout_s, login)
    except HeraldError:
        stop(kdir.parent)  # a failed start leaves no half-started broker behind
        raise
    return Broker(f"127.0.0.1:{port}", pid, log_path, ca_file=_ca_file(kdir, login))


def _attach(kdir: Path, pid: int, port: int, timeout_s: float, login: Login | None) -> Broker:
    wanted = "PLAINTEXT" if login is None else security.LISTENER
    name, running = _listener(kdir) or ("?", None)
    if (name, running) != (wanted, port):
        raise HeraldError(f"Kafka from {kdir} already runs on port {running} ({name}, pid "
                          f"{pid}); stop it first to run it {wanted} on {port}")  # fmt: skip
    _await_answer(kdir, pid, port, timeout_s, login)
    return Broker(f"127.0.0.1:{port}", pid, kdir / "server.log", already_running=True,
                  ca_file=_ca_file(kdir, login))  # fmt: skip


def _ca_file(kdir: Path, login: Login | None) -> Path | None:
    return None if login is None else security.ca_file(kdir)


def _client(kdir: Path, port: int, login: Login | None) -> Settings:
    """Settings for Herald's own checks of this broker: plain text, or its SASL_SSL listener
    with `login` and the broker's CA, whatever the environment configures."""
    return security.client_settings(f"127.0.0.1:{port}", login, _ca_file(kdir, login))


def _await_answer(
    kdir: Path, pid: int, port: int, timeout_s: float, login: Login | None
) -> None:
    log_path = kdir / "server.log"

    def alive() -> None:
        if _running_pid(kdir) is None:
            raise HeraldError(f"Kafka (pid {pid}) exited: {_log_tail(log_path)}")

    try:
        _run(wait_for_broker(_client(kdir, port, login), timeout_s, check=alive))
    except ServiceUnavailable as exc:
        raise HeraldError(
            f"Kafka (pid {pid}) did not answer at 127.0.0.1:{port} within {timeout_s:g} s; "
            f"last log error: {_log_tail(log_path)}"
        ) from exc


def _running_pid(kdir: Path) -> int | None:
    """The pid of this data dir's broker if it is alive (not a stale file or a reused pid)."""
    try:
        pid = int((kdir / "kafka.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ValueError):
        return None
    return pid if os.fsencode(kdir / "server.properties") in cmdline else None


def _wait_gone(kdir: Path, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _running_pid(kdir) is not None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _require_free(port: int, what: str) -> None:
    if not _port_free(port):
        raise HeraldError(
            f"port {port} on 127.0.0.1 is taken by another process: stop it, or start {what} "
            "on another port (HERALD_KAFKA_PORT)"
        )


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # Like the broker's own listener, so a port in TIME_WAIT counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# --- helpers --------------------------------------------------------------------------------


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` to the end from sync code, also when called inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


def _log_tail(path: Path) -> str:
    """The last error line of a broker log (or its last line), with the log's path."""
    try:
        with path.open("rb") as log:
            log.seek(max(0, path.stat().st_size - 65536))
            lines = log.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return f"no log at {path}"
    errors = [line for line in lines if re.search(r"\b(ERROR|FATAL)\b|Exception", line)]
    return f"{tail(errors[-1:] or lines)} (log: {path})"
