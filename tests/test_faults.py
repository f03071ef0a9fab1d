"""Faults a deployment meets (issue 15): real broker, real `herald` processes, real chDB, and
the exact totals of the oracle after each.

Each scenario runs a separate `herald worker` and `herald sink` on a stream that keeps
arriving (tests.e2e.Paced), so the fault lands while every process is busy.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from herald.kafka import local_broker
from herald.load.simulate import Scenario, generate
from herald.load.totals import expected_totals
from herald.processes.child import HeraldProcess
from tests.e2e import Paced, assert_exact, kill_at
from tests.harness import Herald, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.faults]
UNREACHABLE, BACK = "Kafka is unreachable", "Kafka answers again"


def start(role: str, data_dir: Path, bootstrap: str, **env: object) -> HeraldProcess:
    return Herald(data_dir / role, bootstrap, role=role, batch_max=2000, **env).start()


def logged_since(process: HeraldProcess, start_at: int) -> str:
    """What `process` logged after byte `start_at` of its log."""
    with process.log_path.open("rb") as log:
        log.seek(start_at)
        return log.read().decode(errors="replace")


def assert_alive(*processes: HeraldProcess) -> None:
    for process in processes:
        assert process.proc is not None and process.proc.poll() is None, process.log_tail()


def test_broker_sigkilled_mid_stream_and_restarted(
    local_kafka: tuple[Path, local_broker.Broker], tmp_path: Path
) -> None:
    kafka_dir, broker = local_kafka
    port = int(broker.bootstrap.rsplit(":", 1)[1])
    messages = generate(Scenario(seed=21, broadcasts=60, users_per_broadcast=400, invalid=15))
    totals = expected_totals(messages)
    worker, sink = (start(role, tmp_path, broker.bootstrap) for role in ("worker", "sink"))
    stream = Paced(broker.bootstrap, messages).start()
    marks = {}

    def kill_broker() -> None:
        stream.pause()  # between two of the producer's parts
        for p in (worker, sink):
            marks[p.role] = p.log_path.stat().st_size
        os.kill(broker.pid, signal.SIGKILL)

    try:
        kill_at(0.3, totals, sink, kill_broker)
        for p in (worker, sink):
            wait_for(lambda p=p: UNREACHABLE in logged_since(p, marks[p.role]), 30,
                     f"herald {p.role} to say Kafka is unreachable")  # fmt: skip
        restarted = local_broker.start(kafka_dir, port=port)
        stream.resume()
        for p in (worker, sink):
            wait_for(lambda p=p: BACK in logged_since(p, marks[p.role]), 60,
                     f"herald {p.role} to say Kafka answers again")  # fmt: skip
        stream.join()
        assert_exact(sink, totals)
        assert_alive(worker, sink)
        for p in (worker, sink):
            logged = logged_since(p, marks[p.role])
            print(f"--- herald {p.role} after the kill:\n{logged}")
            assert logged.count(UNREACHABLE) == 1 and logged.count(BACK) == 1, logged
            assert "Traceback" not in logged and "Unable connect" not in logged, logged
        assert restarted.pid != broker.pid
    finally:
        worker.stop()
        sink.stop()
