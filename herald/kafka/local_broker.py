"""The local single-node Kafka broker: jars from Maven Central, KRaft, one JVM per data dir.

Layout under `<data_dir>/kafka/`: server.properties and log4j2.properties (rewritten on every
start), data/ (the log dirs, formatted once), server.log, kafka.pid.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import herald
from herald.config import Settings
from herald.errors import HeraldError, ServiceUnavailable
from herald.kafka.admin import wait_for_broker
from herald.kafka.templates import LOG4J2, server_properties

Progress = Callable[[str], None]
POM_PLACES = ("_deploy/kafka/pom.xml", "../deploy/kafka/pom.xml")  # wheel, then source tree
MVN_TIMEOUT_S = 900
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


def pom_path() -> Path:
    """The pom that lists the broker's jars, in the installed wheel or the source tree."""
    package = Path(herald.__file__).parent
    for place in POM_PLACES:
        if (package / place).is_file():
            return (package / place).resolve()
    raise HeraldError(f"deploy/kafka/pom.xml is missing from the Herald install at {package}")


@cache
def kafka_version() -> str:
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom_path().read_text())
    if not match:
        raise HeraldError(f"{pom_path()} names no <kafka.version>")
    return match.group(1)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "herald" / f"kafka-{kafka_version()}"


def ensure_jars(progress: Progress | None = None) -> Path:
    """The directory of the broker's jars, fetched with Maven once per machine."""
    libs = cache_dir() / "libs"
    if libs.is_dir():
        return libs
    _require("java", "a Java 17+ runtime")
    _require("mvn", "Maven")
    libs.parent.mkdir(parents=True, exist_ok=True)
    with _locked(libs.parent / "fetch.lock"):
        if libs.is_dir():  # fetched by a parallel caller while we waited for the lock
            return libs
        _say(progress, f"fetching Kafka {kafka_version()} jars with Maven (once, ~45 MB)")
        tmp = Path(tempfile.mkdtemp(prefix="libs.tmp-", dir=libs.parent))
        try:
            _mvn_copy_dependencies(tmp)
            tmp.rename(libs)  # atomic: nobody ever sees a half-filled libs/
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return libs


def start(
    data_dir: Path, port: int = 9092, timeout_s: float = 90, progress: Progress | None = None
) -> Broker:
    """Start this data dir's broker on 127.0.0.1:`port`, or return it if it already runs.

    The first call on a machine fetches the jars (`ensure_jars`); `timeout_s` bounds the wait
    for the started broker to answer a metadata request.
    """
    kdir = data_dir.expanduser().resolve() / "kafka"
    kdir.mkdir(parents=True, exist_ok=True)
    with _locked(kdir / "start.lock"):
        pid = _running_pid(kdir)
        if pid is not None:
            return _attach(kdir, pid, port, timeout_s)
        _require_free(port, "Kafka")
        libs = ensure_jars(progress)
        _write_config(kdir, port)
        _format_once(kdir, libs, progress)
        return _launch(kdir, libs, port, timeout_s, progress)


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


def status(data_dir: Path, port: int = 9092) -> str:
    """One line: whether this data dir's broker runs, where, and whether it answers."""
    kdir = data_dir.expanduser().resolve() / "kafka"
    pid = _running_pid(kdir)
    if pid is None:
        taken = "" if _port_free(port) else f"; port {port} is taken by another process"
        return f"Kafka is not running from {kdir}{taken}"
    bootstrap = f"127.0.0.1:{_configured_port(kdir) or port}"
    try:
        _run(wait_for_broker(_local_settings(bootstrap), timeout_s=2))
    except ServiceUnavailable:
        return (
            f"Kafka (pid {pid}) runs but does not answer at {bootstrap}; log: {kdir / 'server.log'}"
        )
    return f"Kafka {kafka_version()} is running at {bootstrap} (pid {pid}, data {kdir})"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- jars -----------------------------------------------------------------------------------


def _require(tool: str, what: str) -> None:
    if shutil.which(tool) is None:
        raise HeraldError(f"`{tool}` is not on PATH: the local Kafka broker needs {what}")


def _mvn_copy_dependencies(out: Path) -> None:
    cmd = [
        "mvn", "-B", "-q", "-f", str(pom_path()), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={out}",
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=MVN_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise HeraldError(f"Maven did not fetch the Kafka jars within {MVN_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        raise HeraldError(
            f"Maven could not fetch the Kafka jars: {_tail(done.stdout + done.stderr)}"
        )


# --- config and storage ---------------------------------------------------------------------


def _write_config(kdir: Path, port: int) -> None:
    # The controller port is kept across starts when still free. Its address is only in this
    # file (a static quorum), so moving it when it is taken is safe.
    controller = _configured_port(kdir, "CONTROLLER")
    if controller is None or controller == port or not _port_free(controller):
        controller = free_port()
    (kdir / "server.properties").write_text(server_properties(kdir, port, controller))
    (kdir / "log4j2.properties").write_text(LOG4J2)


def _configured_port(kdir: Path, listener: str = "PLAINTEXT") -> int | None:
    try:
        text = (kdir / "server.properties").read_text()
    except FileNotFoundError:
        return None
    match = re.search(rf"^listeners=.*\b{listener}://[^,:]+:(\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _format_once(kdir: Path, libs: Path, progress: Progress | None) -> None:
    if (kdir / "data" / "meta.properties").exists():
        return
    _say(progress, f"formatting Kafka storage in {kdir / 'data'}")
    cmd = [
        *_java(kdir, libs), "kafka.tools.StorageTool", "format",
        "--cluster-id", _cluster_id(), "--config", str(kdir / "server.properties"),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise HeraldError(f"formatting Kafka storage failed: {_tail(done.stdout + done.stderr)}")


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
    kdir: Path, libs: Path, port: int, timeout_s: float, progress: Progress | None
) -> Broker:
    log_path = kdir / "server.log"
    if log_path.exists():
        log_path.replace(kdir / "server.log.1")  # keep the previous run's log, once
    _say(progress, f"starting Kafka on 127.0.0.1:{port} (log: {log_path})")
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
        _await_answer(kdir, pid, port, timeout_s)
    except HeraldError:
        stop(kdir.parent)  # a failed start leaves no half-started broker behind
        raise
    return Broker(f"127.0.0.1:{port}", pid, log_path)


def _attach(kdir: Path, pid: int, port: int, timeout_s: float) -> Broker:
    running = _configured_port(kdir)
    if running != port:
        raise HeraldError(
            f"Kafka from {kdir} already runs on port {running} (pid {pid}); stop it first"
        )
    _await_answer(kdir, pid, port, timeout_s)
    return Broker(f"127.0.0.1:{port}", pid, kdir / "server.log", already_running=True)


def _await_answer(kdir: Path, pid: int, port: int, timeout_s: float) -> None:
    log_path = kdir / "server.log"

    def alive() -> None:
        if _running_pid(kdir) is None:
            raise HeraldError(f"Kafka (pid {pid}) exited: {_log_tail(log_path)}")

    try:
        _run(wait_for_broker(_local_settings(f"127.0.0.1:{port}"), timeout_s, check=alive))
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


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock shared by every process on the machine (CLI, tests, workers)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- helpers --------------------------------------------------------------------------------


def _local_settings(bootstrap: str) -> Settings:
    # The local broker is always plain text, whatever security the environment configures.
    # The ignore: mypy does not see Field() defaults until pyproject enables pydantic.mypy.
    return Settings(
        kafka_bootstrap=bootstrap, kafka_security_protocol="PLAINTEXT", kafka_sasl_mechanism=None
    )


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
    return f"{_tail(errors[-1:] or lines)} (log: {path})"


def _tail(output: str | list[str], count: int = 3) -> str:
    lines = output.splitlines() if isinstance(output, str) else output
    kept = [line.strip() for line in lines if line.strip()][-count:]
    return " | ".join(line[:300] for line in kept) or "no output"


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)
