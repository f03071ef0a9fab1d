"""SIGKILLs that land mid-stream (SPEC §8), on every process that holds state or offsets.

Every process stays busy: `herald run` works through a stream that is in Kafka first, in
small polls (`batch_max` 100) so that ClickHouse fills in small steps; the worker and sink
work on a stream that keeps arriving, a twentieth a second. Each kill comes once ClickHouse
shows a given part, and asserts that what ClickHouse showed was strictly between nothing and
everything: a kill before the first or after the last event would prove nothing. It lands
after a random pause of up to half a second, since the query is answered between two of the
sink's inserts and a kill right after it would always find the sink idle. The totals after
the restarts must still be exact.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from herald.kafka import local_broker
from herald.load.simulate import Scenario, generate
from herald.load.totals import epoch_ms, expected_totals, instant
from herald.model import topics
from herald.model.packing import unpack
from herald.processes.child import HeraldProcess
from herald.streams.ingest import shard_of, source_id
from tests.e2e import PARTITIONS, Paced, assert_exact, kill_at, produce, read_records
from tests.escalation_data import Script
from tests.harness import Herald, wait_for

pytestmark = pytest.mark.slow


def ingest_child(herald: HeraldProcess) -> int:
    """The pid of `herald run`'s ingest child (`herald worker --only ingest`)."""
    assert herald.proc is not None
    pid = herald.proc.pid

    def child() -> int | None:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for kid in (task / "children").read_text().split():
                if b"--only\x00ingest" in Path(f"/proc/{kid}/cmdline").read_bytes():
                    return int(kid)
        return None

    return wait_for(child, 30, "the ingest child")


def test_sigkill_of_herald_run_and_of_its_ingest_child(broker: str, tmp_path: Path) -> None:
    messages = generate(Scenario(seed=5, broadcasts=60, users_per_broadcast=400, invalid=25))
    totals = expected_totals(messages)
    produce(broker, messages)
    data_dir, port = tmp_path / "h", local_broker.free_port()  # same member after restarts

    def run() -> HeraldProcess:
        return Herald(data_dir, broker, batch_max=100, web_port=port,
                      ingest_processes=1).start()  # fmt: skip

    herald = run()
    kill_at(0.2, totals, herald, herald)
    herald = run()
    kill_at(0.45, totals, herald, ingest_child(herald))  # the parent restarts it
    kill_at(0.7, totals, herald, herald)
    herald = run()
    try:
        assert_exact(herald, totals)
    finally:
        herald.stop()


def test_sigkill_of_a_separate_sink_and_of_a_worker(broker: str, tmp_path: Path) -> None:
    messages = generate(Scenario(seed=9, broadcasts=60, users_per_broadcast=400, invalid=15))
    totals = expected_totals(messages)
    ports = {role: local_broker.free_port() for role in ("worker", "sink")}

    def start(role: str) -> HeraldProcess:
        return Herald(tmp_path / role, broker, role=role, batch_max=2000,
                      web_port=ports[role]).start()  # fmt: skip

    worker, sink = start("worker"), start("sink")
    stream = Paced(broker, messages).start()
    try:
        kill_at(0.2, totals, sink, sink)
        sink = start("sink")
        kill_at(0.4, totals, sink, sink)
        sink = start("sink")
        kill_at(0.6, totals, sink, worker)
        worker = start("worker")
        stream.join()
        assert_exact(sink, totals)
    finally:
        worker.stop()
        sink.stop()


def test_an_ingest_killed_after_a_commit_had_told_every_shard_its_watermarks(
    broker: str, tmp_path: Path
) -> None:
    """All of deliveries/0's events belong to one broadcast, so the other shards learn how far
    that partition got from heartbeats alone. The ingest is killed right after it committed
    them: its successor re-reads nothing and starts knowing no watermark, so if no heartbeat
    had carried it before the commit, those shards' event time would stay behind until the
    partition's next event (forever, without one): no window closing, no retry due, no
    escalation."""
    script = Script((int(time.time()) // 60 - 60) * 60_000)
    for second in range(30):
        script.attempt(second, "t1", "DE", "push", failed=False)
    produce(broker, script.events, lambda _: 0)
    last = max(epoch_ms(instant(m.event["occurred_at"])) for m in script.events if m.event)
    worker = Herald(tmp_path / "w", broker, role="worker", idle_partition_s=3600,
                    failpoint="ingest-committed:1").launch()  # fmt: skip
    assert worker.proc is not None
    assert worker.proc.wait(120) == -signal.SIGKILL, "the failpoint was never reached"
    told: dict[int, int] = {}
    for record in read_records(broker, topics.EVENTS):
        beats = unpack(record.value)[0].get("hb", {})
        if source_id(topics.DELIVERIES, 0) in beats:
            wm = beats[source_id(topics.DELIVERIES, 0)][0]
            told[record.partition] = max(told.get(record.partition, 0), wm)
    others = set(range(PARTITIONS)) - {shard_of("t1", "b1", PARTITIONS)}
    assert {p: told.get(p) for p in others} == {p: last for p in others}
