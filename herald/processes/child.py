"""A `herald <role>` child process: used by `herald demo`, `herald bench` and the tests.

Embedded ClickHouse belongs to the process that writes it, so everything here reads through
the child's `/query` page and never opens chDB itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson

from herald.config import Settings
from herald.errors import HeraldError
from herald.kafka import local_broker
from herald.processes.query import ask_running_process

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout_s: float, what: str, every_s: float = 0.5) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(every_s)  # polling interval of a condition with a deadline
    raise HeraldError(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})")


class HeraldProcess:
    """One `herald <role>` child process with its own data dir, web port and settings."""

    def __init__(self, data_dir: Path, bootstrap: str, role: str = "run", **env: Any) -> None:
        self.role = role
        self.env = {
            **os.environ,
            "HERALD_DATA_DIR": str(data_dir),
            "HERALD_KAFKA_BOOTSTRAP": bootstrap,
            "HERALD_WEB_PORT": str(local_broker.free_port()),
            **{f"HERALD_{k.upper()}": str(v) for k, v in env.items()},
        }
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / f"{role}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def settings(self) -> Settings:
        keys = {k[7:].lower(): _env_value(v) for k, v in self.env.items()
                if k.startswith("HERALD_")}  # fmt: skip
        return Settings.model_validate(keys)

    def start(self) -> HeraldProcess:
        """Launch and wait until it answers."""
        self.launch()
        wait_for(self._answers, 60, f"herald {self.role} to answer")
        return self

    def launch(self) -> HeraldProcess:
        """Start the process without waiting for it (one that waits for a service first)."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "herald", self.role], env=self.env, stdout=log, stderr=log
        )
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise HeraldError(f"herald {self.role} exited: {self.log_tail(3)}")
        if self.role == "worker":  # holds no ClickHouse: its web server answering is enough
            return _health(self.settings.web_port)
        return ask_running_process(self.settings, "SELECT 1 FORMAT TSV") is not None

    def ask(self, sql: str) -> str:
        """The child's answer to SQL, in the format the SQL names."""
        text = ask_running_process(self.settings, sql)
        if text is None:
            raise HeraldError(f"herald {self.role} does not answer: {self.log_tail(3)}")
        return text

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Rows as dicts, through the child's /query page (opening chDB here would lock it)."""
        text = self.ask(f"{sql} FORMAT JSONEachRow")
        return [orjson.loads(line) for line in text.splitlines() if line.strip()]

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a host dies."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def cpu_seconds(self) -> float:
        """User + system CPU time of the child and its worker processes so far (Linux /proc)."""
        assert self.proc is not None
        return _tree_cpu(self.proc.pid)

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _env_value(value: str) -> Any:
    """A section given as JSON (HERALD_ESCALATIONS='{"enabled": false}') as the child reads it."""
    return orjson.loads(value) if value.startswith(("{", "[")) else value


def _tree_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:  # exited meanwhile
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(_tree_cpu(int(child)) for child in children)


def _health(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError):
        return False
