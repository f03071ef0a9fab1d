"""`herald demo`: from nothing to numbers in one command.

Starts the local Kafka broker (fetching its jars once), runs `herald run` (worker + sink,
embedded ClickHouse) as a child, plays a simulated load with live numbers, waits until every
event is counted, prints a summary from ClickHouse and writes the HTML report.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

from herald.config import Settings
from herald.kafka import local_broker
from herald.load.simulate import Scenario, run_live
from herald.processes.child import HeraldProcess, wait_for
from herald.processes.query import escalations_sql, write_report

Progress = Callable[[str], None]
LIVE_EVERY_S = 5.0
LIVE_SQL = (
    "SELECT sum(queued + attempted + delivered + failed + pending + expired) AS deliveries,"
    " sum(received + read + clicked + dismissed + responded) AS acks,"
    " sum(delivered) AS n_delivered, sum(read) AS n_read, count() AS broadcasts"
    " FROM broadcast_summary"
)
SUMMARY_SQL = """
SELECT tenant_id AS tenant, count() AS broadcasts, sum(target_count) AS targeted,
       sum(recipients_delivered) AS reached, sum(recipients_read) AS readers,
       sum(delivered) AS n_delivered, sum(failed) AS n_failed,
       sum(dead_lettered) AS dead_letters,
       round(reached / nullIf(targeted, 0), 3) AS delivery_rate,
       round(readers / nullIf(reached, 0), 3) AS read_rate,
       round(quantileExact(0.5)(delivery_latency_p95_ms)) AS p95_latency_ms_median,
       round(quantileExact(0.5)(time_to_read_p50_s), 1) AS time_to_read_p50_s
FROM broadcast_summary GROUP BY tenant_id ORDER BY tenant_id
FORMAT PrettyCompactMonoBlock
"""


def run_demo(settings: Settings, duration_s: float, rate: float, out: Path,
             progress: Progress) -> str:  # fmt: skip
    started = time.monotonic()
    progress("starting the local Kafka broker (the first run fetches its jars with Maven)")
    broker = local_broker.start(settings.data_path, settings.kafka_port, progress=progress)
    settings = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
    try:
        progress(f"Kafka at {broker.bootstrap}; starting herald run (worker + sink, chDB)")
        herald = HeraldProcess(settings.data_path, broker.bootstrap).start()
        try:
            progress(f"simulating {rate:.0f} messages/s for {duration_s:.0f} s")
            _load_with_live_numbers(settings, herald, rate, duration_s, progress)
            _wait_until_counted(herald, progress)
            summary = herald.ask(SUMMARY_SQL)
            opened = herald.ask(escalations_sql(history=False, tenant=None))
            report = write_report(herald.settings, out.resolve())
        finally:
            herald.stop()
    finally:
        if not broker.already_running:
            local_broker.stop(settings.data_path)
    took = time.monotonic() - started
    return (f"{summary}\nopen escalations (herald escalations):\n{opened or '  none'}\n"
            f"report: {report}\ndemo took {took:.0f} s; data in {settings.data_path}")


def _load_with_live_numbers(settings: Settings, herald: HeraldProcess, rate: float,
                            duration_s: float, progress: Progress) -> None:  # fmt: skip
    done = threading.Event()

    def live() -> None:
        while not done.wait(LIVE_EVERY_S):
            row = herald.query(LIVE_SQL)[0]
            progress(
                f"live: {row['broadcasts']} broadcasts, {row['deliveries']} delivery events,"
                f" {row['acks']} acks, {row['n_delivered']} delivered, {row['n_read']} read"
            )

    watcher = threading.Thread(target=live, daemon=True)
    watcher.start()
    try:
        # Late events stay within 30 s so that a one-minute demo shows them in recent windows;
        # a new seed per run, so a second demo on the same data adds events, not duplicates.
        # DE fails most attempts for part of every simulated scenario: region_failure_rate
        # opens, retries and dead letters flow.
        scenario = Scenario(seed=secrets.randbits(31), max_delay_s=30, invalid=20,
                            outage=("DE", 120, 420))  # fmt: skip
        asyncio.run(run_live(settings, rate, duration_s, None, scenario))
    finally:
        done.set()
        watcher.join()


def _wait_until_counted(herald: HeraldProcess, progress: Progress) -> None:
    """Until two successive reads agree and the consumers have no lag."""
    progress("waiting until every event is counted")
    last: list[object] = []

    def settled() -> bool:
        totals = herald.query(LIVE_SQL)
        lag = herald.query(
            "SELECT sum(consumer_lag) AS lag FROM pipeline_stats_1m FINAL"
            " WHERE window_start >= now() - 60"
        )
        still = totals == last and int(lag[0]["lag"] or 0) == 0
        last[:] = totals
        return still

    wait_for(settled, 120, "the counts to settle", every_s=2.0)
