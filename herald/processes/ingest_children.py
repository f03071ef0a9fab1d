"""Ingest child processes for `herald run`.

One Python process runs on one core. `herald run` keeps the aggregation shards and the sink
(and so chDB, which allows one process per data directory) and starts HERALD_INGEST_PROCESSES
`herald worker --only ingest` children: validation and routing, the costliest stage, then run
on another core, and the two halves meet through `herald.events`. Several children share the
input partitions through Kafka's consumer group. Children die with the parent
(PR_SET_PDEATHSIG), even when the parent is killed with SIGKILL.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
from typing import Any

import mode

from herald.config import Settings

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
RESTART_DELAY_S = 1.0


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class IngestProcesses(mode.Service):
    """Starts, restarts and stops `herald worker --only ingest` children."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.children: list[subprocess.Popen[bytes]] = []

    def web_port(self, index: int) -> int:
        """Child i serves health, /status and /metrics on the parent's web port + 1 + i."""
        return self.settings.web_port + 1 + index

    def web_ports(self) -> list[int]:
        return [self.web_port(i) for i in range(len(self.children))]

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, "HERALD_WEB_PORT": str(self.web_port(index)),
               "HERALD_DATA_DIR": str(self.settings.data_path)}  # fmt: skip
        return subprocess.Popen(
            [sys.executable, "-m", "herald", "worker", "--only", "ingest"],
            env=env,
            preexec_fn=_die_with_parent,
        )

    async def on_start(self) -> None:
        self.children = [self._spawn(i) for i in range(self.settings.ingest_children)]

    @mode.Service.task
    async def _supervise(self) -> None:
        while not self.should_stop:
            await self.sleep(RESTART_DELAY_S)
            for index, child in enumerate(self.children):
                if child.poll() is not None and not self.should_stop:
                    log.warning("ingest %s exited with %s; restarting", child.pid, child.returncode)
                    self.children[index] = self._spawn(index)

    async def on_stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.terminate()
        for child in self.children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
