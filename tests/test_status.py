"""`herald status` with nothing running: one line, nonzero exit, no traceback. (Against
running processes: tests/test_prometheus.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from herald.kafka import local_broker


@pytest.mark.parametrize("args", [[], ["--url", "127.0.0.1:{port}", "--url", "localhost:{port}"]])
def test_nothing_running_is_one_line_and_exit_1(args: list[str]) -> None:
    port = local_broker.free_port()
    env = {**os.environ, "HERALD_WEB_PORT": str(port)}
    done = subprocess.run([sys.executable, "-m", "herald", "status",
                           *(a.format(port=port) for a in args)],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1 and not done.stdout
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"herald: no Herald process answers at 127.0.0.1:{port}")
