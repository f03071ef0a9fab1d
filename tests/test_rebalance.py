"""Rebalances mid-stream (issue 15, fault 1): two `herald worker` processes and a `herald sink`
on a stream that keeps arriving; a third worker joins, one of the first two leaves with
SIGTERM and the other dies with SIGKILL, so every shard moves at least once, with its
changelog (what the shards had consumed of herald.events is deleted before the join), and
the last worker ends up with all of them. Totals, per-minute windows, lifecycles, retries and
dead letters (each once on its topic) stay exact; so do escalations, on their scripted data,
when a worker joins and another dies."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path

import pytest

from herald.config import Escalations
from herald.load.escalations import expected_escalations
from herald.load.totals import expected_followups, expected_totals
from herald.model import topics
from herald.processes.child import HeraldProcess
from tests.e2e import Paced, assert_exact, delete_consumed, kill_at, produce
from tests.escalation_data import CONFIG, partition, scripted
from tests.harness import wait_for
from tests.test_escalations_e2e import all_transitions, published, transitions
from tests.test_faults import assert_alive, start
from tests.test_followups import by_broadcast_key, check_rows_and_topics, known_failures, settled

pytestmark = [pytest.mark.slow, pytest.mark.faults]


def shards_held(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "worker" / "state").glob("shard-*")}


def test_a_worker_joins_one_leaves_one_dies(broker: str, tmp_path: Path) -> None:
    messages = known_failures(41, broadcasts=40)
    totals, want = expected_totals(messages), expected_followups(messages)
    fast = {"idle_partition_s": 2}  # retries fire on the clock once the stream is idle

    def worker(name: str) -> HeraldProcess:
        return start("worker", tmp_path / name, broker, **fast)

    first, second = worker("a"), worker("b")
    sink = start("sink", tmp_path, broker)
    stream = Paced(broker, messages, partition=by_broadcast_key).start()
    third = None
    try:
        def join() -> None:
            """Once the shards consumed it, herald.events so far is deleted: the newcomer's
            shards can only get their state from the changelog."""
            nonlocal third
            assert delete_consumed(broker, topics.EVENTS, ["shards"]) > 0
            third = worker("c")

        kill_at(0.2, totals, sink, join)
        kill_at(0.45, totals, sink, first.stop)  # SIGTERM: leaves the group
        kill_at(0.7, totals, sink, second)  # SIGKILL
        stream.join()
        assert_exact(sink, totals)
        rows = wait_for(lambda: settled(sink, want), 120, "every retry decided")
        assert third is not None
        assert_alive(third, sink)
    finally:
        for process in (first, second, third, sink):
            if process is not None:
                process.stop()
    check_rows_and_topics(broker, rows, want)
    # The newcomer had no state: the shards it holds came from their changelog.
    assert shards_held(tmp_path / "c") == {f"shard-{p}" for p in range(4)}
    for name in "abc":
        log = (tmp_path / name / "worker" / "worker.log").read_text()
        assert "Traceback" not in log and "Invalid state transition" not in log, log


def test_escalations_stay_exact_when_a_worker_joins_and_one_dies(
    broker: str, tmp_path: Path
) -> None:
    """The scripted stories of tests/escalation_data.py on two workers; a third joins at 30 %,
    the first is SIGKILLed at 60 %. The escalation agent's table moves with Faust's changelog,
    the publisher's record with herald.published: every transition at the oracle's event
    time, each once on herald.escalations."""
    messages = scripted((int(time.time()) // 60 - 120) * 60_000)
    config_file = tmp_path / "herald.toml"
    config_file.write_text(CONFIG)
    want = expected_escalations(messages, Escalations(**tomllib.loads(CONFIG)["escalations"]))
    totals = expected_totals(messages)
    env = {"idle_partition_s": 3600, "config": config_file}  # event time moves with the data

    def worker(name: str) -> HeraldProcess:
        return start("worker", tmp_path / name, broker, **env)

    first, second = worker("a"), worker("b")
    sink = start("sink", tmp_path, broker)
    lifecycles = [m for m in messages if m.topic == topics.BROADCASTS]
    produce(broker, lifecycles, partition)  # announced before they are sent to
    wait_for(lambda: sink.query("SELECT count() AS n FROM broadcasts")[0]["n"] == 3, 60,
             "the lifecycles")  # fmt: skip
    rest = [m for m in messages if m.topic != topics.BROADCASTS]
    stream = Paced(broker, rest, partition=partition).start()
    third = None
    try:
        def join() -> None:
            nonlocal third
            third = worker("c")

        kill_at(0.3, totals, sink, join)
        kill_at(0.6, totals, sink, first)
        stream.join()
        rows = all_transitions(sink, len(want))
        assert_alive(second, sink)
    finally:
        for process in (first, second, third, sink):
            if process is not None:
                process.stop()
    assert transitions(rows) == want
    assert published(broker) == sorted(want)  # each once, read_committed
