"""Run real Herald processes against a real broker and read real ClickHouse (chDB)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson

from herald import local_kafka
from herald.config import Settings
from herald.query import ask_running_process

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout_s: float, what: str, every_s: float = 0.5) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(every_s)  # polling interval of a condition with a deadline, not a wait-and-hope
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")


class Herald:
    """One `herald <role>` child process with its own data dir, web port and settings."""

    def __init__(self, data_dir: Path, bootstrap: str, role: str = "run", **env: Any) -> None:
        self.role = role
        self.env = {
            **os.environ,
            "HERALD_DATA_DIR": str(data_dir),
            "HERALD_KAFKA_BOOTSTRAP": bootstrap,
            "HERALD_WEB_PORT": str(local_kafka.free_port()),
            "HERALD_SNAPSHOT_INTERVAL_S": "0.5",
            "HERALD_IDLE_PARTITION_S": "5",
            **{f"HERALD_{k.upper()}": str(v) for k, v in env.items()},
        }
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / f"{role}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def settings(self) -> Settings:
        keys = {k[7:].lower(): v for k, v in self.env.items() if k.startswith("HERALD_")}
        return Settings(**keys)

    def start(self) -> Herald:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "herald", self.role], env=self.env, stdout=log, stderr=log
        )
        wait_for(self._answers, 60, f"herald {self.role} to answer")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"herald {self.role} exited: {self.log_tail()}")
        return ask_running_process(self.settings, "SELECT 1 FORMAT TSV") is not None

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Through the process's /query page only: opening chDB here would lock it."""
        text = ask_running_process(self.settings, f"{sql} FORMAT JSONEachRow")
        assert text is not None, f"herald {self.role} does not answer: {self.log_tail()}"
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

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
