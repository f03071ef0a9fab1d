"""Faults a deployment meets (issue 15): real broker, real `herald` processes, real chDB, and
the exact totals of the oracle after each.

Each scenario runs a separate `herald worker` and `herald sink` on a stream that keeps
arriving (tests.e2e.Paced), so the fault lands while every process is busy.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from herald.kafka import local_broker
from herald.load.simulate import Scenario, generate
from herald.load.totals import expected_totals
from herald.processes.child import HeraldProcess
from herald.processes.query import ask_running_process
from herald.telemetry.outage import CONNECTION_NOISE
from tests.chhttp import ChHttp
from tests.e2e import Paced, aggregates_end, assert_exact, kill_at, produce, scrape
from tests.harness import Herald, wait_for
from tests.test_cli import herald

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
            assert "Traceback" not in logged, logged
            assert not any(f"] {noise}" in logged for noise in CONNECTION_NOISE), logged
        assert restarted.pid != broker.pid
    finally:
        worker.stop()
        sink.stop()


def lag_by_stage(process: HeraldProcess) -> dict[str, int]:
    """The process's consumer lag per stage, summed over partitions, from its /metrics."""
    lag = scrape(process, "herald_consumer_lag_records", "stage")
    return {stage: int(n) for stage, n in lag.items()}


def group_offsets(bootstrap: str, group: str) -> dict[TopicPartition, tuple[int, int]]:
    """Per partition a consumer group committed on: (its committed offset, the end)."""

    async def offsets() -> dict[TopicPartition, tuple[int, int]]:
        admin_client = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await admin_client.start()
        await consumer.start()
        try:
            done = await admin_client.list_consumer_group_offsets(group)
            ends = await consumer.end_offsets(list(done))
            return {tp: (meta.offset, ends[tp]) for tp, meta in done.items()}
        finally:
            await consumer.stop()
            await admin_client.close()

    return asyncio.run(offsets())


def group_lag(bootstrap: str, group: str) -> int:
    """How far a consumer group's committed offsets are behind its partitions' ends."""
    return sum(end - done for done, end in group_offsets(bootstrap, group).values())


def test_sink_down_for_half_a_minute_while_the_worker_goes_on(broker: str, tmp_path: Path) -> None:
    """The sink stops (SIGTERM) at 15 % and stays down until the worker has done everything
    produced meanwhile: the worker never waits for it, and the sink catches up exactly."""
    messages = generate(Scenario(seed=23, broadcasts=70, users_per_broadcast=400, invalid=15))
    totals = expected_totals(messages)
    sink_port = local_broker.free_port()  # the same group member when it comes back
    worker = start("worker", tmp_path, broker)
    sink = start("sink", tmp_path, broker, web_port=sink_port)
    stream = Paced(broker, messages, steps=20).start()
    samples: list[tuple[float, dict[str, int], int, int]] = []

    def sample() -> None:
        samples.append((time.monotonic() - down_at, lag_by_stage(worker),
                        group_lag(broker, "herald-sink"), aggregates_end(broker)))  # fmt: skip

    try:
        kill_at(0.15, totals, sink, sink.stop)
        down_at = time.monotonic()
        wait_for(lambda: sample() or not stream.running(), 120, "the producer to finish",
                 every_s=1.0)  # fmt: skip
        wait_for(lambda: sample() or not any(samples[-1][1].values()), 60,
                 "the worker to catch up while the sink is down", every_s=1.0)  # fmt: skip
        outage_s = time.monotonic() - down_at
        sink = start("sink", tmp_path, broker, web_port=sink_port)
        assert_exact(sink, totals)
    finally:
        worker.stop()
        sink.stop()
    print(f"sink down {outage_s:.0f} s; s, worker lag per stage, sink group lag, aggregates end:")
    for at, lag, behind, end in samples:
        print(f"  {at:5.1f} {lag} {behind} {end}")
    assert outage_s >= 20, "the outage was too short to mean anything"
    assert samples[-1][2] > samples[0][2] and samples[-1][3] > samples[0][3]
    assert max(max(lag.values(), default=0) for _, lag, _, _ in samples) < totals.valid / 4


def retry_lines(process: HeraldProcess) -> list[tuple[str, float]]:
    """The sink's one-line ClickHouse errors so far: (cause, the backoff it announced)."""
    found = re.findall(r"sink: cannot reach ClickHouse at [^:]+:\d+: (.*); retrying in ([\d.]+)s",
                       process.log_path.read_text(errors="replace"))  # fmt: skip
    return [(cause, float(delay)) for cause, delay in found]


def test_clickhouse_refusing_then_dropping_then_forwarding(broker: str, tmp_path: Path) -> None:
    """A ClickHouse server (tests.chhttp) whose port is closed, then accepts and drops
    connections, then answers, on one port: the sink says so in one line per try with a
    growing backoff, and consumes (so commits) nothing; once the server answers, the sink
    inserts everything over HTTP, exactly."""
    messages = generate(Scenario(seed=29, invalid=10))
    totals = expected_totals(messages)
    produce(broker, messages)
    worker = start("worker", tmp_path, broker)
    with ChHttp(tmp_path / "server", mode="refuse", password="secret") as server:
        sink = Herald(tmp_path / "sink", broker, role="sink", clickhouse_dsn=server.dsn).launch()
        try:
            refused = wait_for(lambda: len(retry_lines(sink)) >= 4 and retry_lines(sink), 60,
                               "four refused tries")  # fmt: skip
            server.switch("drop")
            wait_for(lambda: len(retry_lines(sink)) >= len(refused) + 2, 60, "two dropped tries")
            assert_alive(sink)
            assert group_offsets(broker, "herald-sink") == {}  # nothing committed
            server.switch("forward")
            wait_for(lambda: ask_running_process(sink.settings, "SELECT 1 FORMAT TSV"), 60,
                     "the sink to start once ClickHouse answers")  # fmt: skip
            assert_exact(sink, totals)
            lines = retry_lines(sink)
            assert_alive(sink)
        finally:
            worker.stop()
            sink.stop()
    log = sink.log_path.read_text()
    assert "Traceback" not in log and "Retrying (" not in log and "secret" not in log
    delays = [delay for _, delay in lines]
    assert delays == sorted(delays) and delays[0] < delays[-1], delays
    assert "refused" in lines[0][0].lower()
    assert lines[-1][0] != lines[0][0], "the dropped connections said the same as refused"
    assert not (tmp_path / "sink" / "clickhouse").exists(), "the sink wrote to chDB of its own"


def insert_failures(process: HeraldProcess, start_at: int) -> list[tuple[str, float]]:
    """The sink's failed inserts logged after byte `start_at`: (cause, the backoff announced)."""
    found = re.findall(r"sink: ClickHouse insert failed \((.*)\), retrying in ([\d.]+)s",
                       logged_since(process, start_at))  # fmt: skip
    return [(cause, float(delay)) for cause, delay in found]


def committed_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    return {tp: done for tp, (done, _end) in group_offsets(bootstrap, group).items()}


def test_clickhouse_server_goes_away_under_a_running_sink(broker: str, tmp_path: Path) -> None:
    """The server a running sink writes to refuses at 30 %, then drops connections, then answers
    again: the sink retries its batch with a growing backoff, one line each, commits nothing
    meanwhile, and ends exact."""
    messages = generate(Scenario(seed=37, broadcasts=60, users_per_broadcast=400, invalid=15))
    totals = expected_totals(messages)
    with ChHttp(tmp_path / "server", password="secret") as server:
        worker = start("worker", tmp_path, broker)
        sink = start("sink", tmp_path, broker, clickhouse_dsn=server.dsn)
        stream = Paced(broker, messages).start()
        try:
            kill_at(0.3, totals, sink, lambda: server.switch("refuse"))
            mark = sink.log_path.stat().st_size
            wait_for(lambda: len(insert_failures(sink, mark)) >= 3, 60, "three refused inserts")
            committed = committed_offsets(broker, "herald-sink")
            server.switch("drop")
            refused = len(insert_failures(sink, mark))
            wait_for(lambda: len(insert_failures(sink, mark)) >= refused + 2, 60,
                     "two dropped inserts")  # fmt: skip
            assert committed_offsets(broker, "herald-sink") == committed  # nothing committed
            server.switch("forward")
            stream.join()
            assert_exact(sink, totals)
            assert_alive(worker, sink)
        finally:
            worker.stop()
            sink.stop()
    failures, logged = insert_failures(sink, mark), logged_since(sink, mark)
    print(f"--- herald sink after the server went away:\n{logged}")
    assert "Traceback" not in logged and "Retrying (" not in logged and "secret" not in logged
    delays = [delay for _, delay in failures]
    assert delays == sorted(delays) and delays[0] < delays[-1], delays
    causes = [cause for cause, _ in failures]  # the first may be the connection it cut
    assert any("Connection refused" in c for c in causes[:refused]), causes
    assert "Connection refused" not in causes[-1], causes


@contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A small tmpfs mounted at `where` (root only; skipped where mounting is not allowed:
    root ignores file modes, so a read-only mount is how a read-only dir is made here)."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(directory: Path) -> None:
    """Write into `directory` until its file system is full."""
    with suppress(OSError), (directory / "filler").open("wb") as filler:
        while True:
            filler.write(b"\0" * 65536)
            filler.flush()


# fault: the tmpfs's mount point and options, the data dir, the path the error names (all
# under the test's tmp dir)
DISK_FAULTS = {
    "read-only data dir": ("disk", "ro,size=1m", "disk/herald", "disk/herald"),
    "full disk": ("disk", "size=64k", "disk/herald", "disk/herald"),
    "read-only state dir": ("herald/state", "ro,size=1m", "herald", "herald/state"),
}


@pytest.mark.parametrize("fault", list(DISK_FAULTS))
def test_unwritable_data_dir_on_start_is_one_line(
    kafka_bootstrap: str, tmp_path: Path, fault: str
) -> None:
    mount_at, options, data_dir, named = DISK_FAULTS[fault]
    with tmpfs(tmp_path / mount_at, options) as disk:
        if fault == "full disk":
            fill(disk)
            with pytest.raises(OSError) as full:
                (disk / "probe").write_bytes(b"\0" * 4096)
            assert full.value.errno == errno.ENOSPC
        done = herald("worker", HERALD_DATA_DIR=str(tmp_path / data_dir),
                      HERALD_KAFKA_BOOTSTRAP=kafka_bootstrap)  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    reason = "No space left on device" if fault == "full disk" else "Read-only file system"
    assert f"cannot write to {tmp_path / named} " in lines[0] and reason in lines[0], lines[0]
