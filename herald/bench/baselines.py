"""Throughput baselines measured on the same messages as Herald's benchmark (SPEC §8).

- `raw`: aiokafka `getmany` + `orjson.loads` per message, the Python client's limit;
- `faust_naive`: a Faust agent doing `table[(tenant, region, channel, minute)] += 1` per event
  on a RocksDB (rocksdict) table, the way the Faust docs would have you write it;
- `quix`: Quix Streams, an event-time 60 s tumbling count (time from `occurred_at`).

Each baseline runs in a process of its own (`python -m herald.bench.baselines NAME BOOTSTRAP
TOPIC N TIMEOUT_S WORKDIR` prints one JSON line), so its CPU time is its own and no state leaks
between runs. Each reads the topic from the earliest offset with a fresh consumer group. The
clock and the CPU meter start at the first message and stop at the N-th, or when the time
budget runs out (Faust and Quix are slow: give them a sample), so start-up and group joins are
not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from herald.errors import HeraldError

BASELINES = ("raw", "faust_naive", "quix")
# Interpreter start, imports, topic metadata and group joins come on top of the time budget.
STARTUP_S = 60.0
# Quix stops by itself when no message came for this long (the topic holds fewer than N).
QUIX_IDLE_S = 5.0


@dataclass(frozen=True)
class BaselineResult:
    name: str
    events: int
    seconds: float
    events_per_s: float
    cpu_s: float
    skipped: str | None = None  # why the baseline could not run (e.g. not installed)


class Meter:
    """Wall and CPU time from the first message to the last one counted, which is the N-th
    unless the budget ran out first (then the rate is over what was done)."""

    def __init__(self, n: int, budget_s: float) -> None:
        self.n, self.budget_s = n, budget_s
        self.events = 0
        self.done = False
        self._t0 = self._cpu0 = self._seconds = self._cpu = 0.0
        self._created = time.perf_counter()  # the budget runs from here until a first message

    def begin(self) -> None:
        if self._t0 == 0.0:
            self._t0, self._cpu0 = time.perf_counter(), _cpu()

    def add(self, count: int) -> bool:
        """Count consumed messages; True once N are reached or the budget is spent."""
        if self.done:
            return True
        now = time.perf_counter()
        if count:
            self.events += count
            self._seconds, self._cpu = now - self._t0, _cpu() - self._cpu0
        self.done = self.events >= self.n or now - (self._t0 or self._created) >= self.budget_s
        return self.done

    def remaining(self) -> int:
        return self.n - self.events

    def result(self, name: str) -> BaselineResult:
        seconds = max(self._seconds, 1e-9)
        return BaselineResult(name, self.events, seconds, self.events / seconds, self._cpu)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_baseline(name: str, bootstrap: str, topic: str, n: int, timeout_s: float) -> BaselineResult:
    """Run one baseline in a subprocess on the first `n` messages of `topic`."""
    if name not in BASELINES:
        raise HeraldError(f"unknown baseline {name!r} (one of {', '.join(BASELINES)})")
    with tempfile.TemporaryDirectory(prefix=f"herald-bench-{name}-") as workdir:
        argv = [sys.executable, "-m", __name__, name, bootstrap, topic, str(n), str(timeout_s)]
        try:
            proc = subprocess.run(
                [*argv, workdir], capture_output=True, text=True, timeout=timeout_s + STARTUP_S
            )
        except subprocess.TimeoutExpired:
            raise HeraldError(
                f"baseline {name} did not finish within {timeout_s + STARTUP_S:.0f} s"
            ) from None
    return _parse_result(name, proc)


def _parse_result(name: str, proc: subprocess.CompletedProcess[str]) -> BaselineResult:
    for line in reversed(proc.stdout.splitlines()):
        start = line.find('{"name"')  # Faust's spinner may prefix terminal control codes
        if start >= 0 and proc.returncode == 0:
            return BaselineResult(**json.loads(line[start:]))
    detail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    raise HeraldError(f"baseline {name} failed: {detail}")


# --- raw aiokafka + orjson -------------------------------------------------------------------


async def _raw(bootstrap: str, topic: str, meter: Meter) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,  # assigned partitions: a fresh reader without a group join to wait for
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=16 << 20,
    )
    await consumer.start()
    try:
        partitions = await _partitions(bootstrap, topic)
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        await consumer.seek_to_beginning()
        meter.begin()
        while not meter.done:
            batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for records in batches.values():
                wanted = records[: meter.remaining()]
                for record in wanted:
                    try:  # noqa: SIM105 (a `with suppress` per message costs more than the parse)
                        orjson.loads(record.value)  # type: ignore[arg-type]
                    except orjson.JSONDecodeError:
                        pass  # an invalid message costs its parse like any other
                if meter.add(len(wanted)):
                    break
            if not batches:
                meter.add(0)  # lets the budget end a run on a topic with fewer messages
    finally:
        await consumer.stop()


# --- naive Faust -----------------------------------------------------------------------------


def _naive_key(value: bytes) -> str:
    """(tenant, region, channel, minute); the minute is the timestamp's first 16 characters,
    as a naive agent would write it."""
    try:
        event = orjson.loads(value)
        return "|".join(
            (
                event["tenant_id"],
                event.get("region", ""),
                event.get("channel", ""),
                event["occurred_at"][:16],
            )
        )
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "invalid"


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    from herald.config import Settings
    from herald.kafka.admin import topic_partitions

    # Plain text like every other client here: the bench runs against its own local broker.
    settings = Settings(
        kafka_bootstrap=bootstrap, kafka_security_protocol="PLAINTEXT", kafka_sasl_mechanism=None
    )
    return await topic_partitions(settings, topic)


def _faust_naive(bootstrap: str, topic: str, meter: Meter, workdir: Path) -> None:
    import faust

    partitions = len(asyncio.run(_partitions(bootstrap, topic)))
    app = faust.App(
        f"herald-bench-faust-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{bootstrap}",
        # faust-streaming 0.15 has no rocksdict:// URL: rocksdb:// uses rocksdict when the
        # python-rocksdb binding is absent, and the table's driver option makes it explicit.
        store="rocksdb://",
        datadir=str(workdir / "faust"),
        topic_partitions=partitions,  # tables must be co-partitioned with the source
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")
    table = app.Table("counts", default=int, options={"driver": "rocksdict"})

    def finish() -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # the worker's own graceful shutdown

    @app.agent(source)
    async def count(stream: Any) -> None:
        async for value in stream:
            if meter.done:
                continue  # draining until the shutdown takes effect
            meter.begin()
            table[_naive_key(value)] += 1
            if meter.add(1):
                finish()

    @app.timer(interval=1.0)
    async def budget() -> None:
        if not meter.done and meter.add(0):
            finish()

    worker = faust.Worker(app, loglevel="warn", quiet=True, redirect_stdouts=False)
    with contextlib.suppress(SystemExit):  # the worker always exits this way
        worker.execute_from_commandline()


# --- Quix Streams ----------------------------------------------------------------------------


def _occurred_ms(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
    """Event time; an invalid event keeps the record's time (Quix cannot skip it here)."""
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(value["occurred_at"]).timestamp() * 1000)
    except (KeyError, TypeError, ValueError):
        return timestamp


def _quix(bootstrap: str, topic: str, meter: Meter, workdir: Path) -> str | None:
    try:
        from quixstreams import Application
    except ImportError as exc:
        return f"quixstreams is not importable ({exc})"
    app = Application(
        broker_address=bootstrap,
        consumer_group=f"herald-bench-quix-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        state_dir=str(workdir / "quix"),
        loglevel="WARNING",
        on_consumer_error=lambda exc, message, logger: _skip_undecodable(exc, meter, app),
    )

    def counted(_: Any) -> None:
        if meter.add(1):
            app.stop()

    sdf = app.dataframe(app.topic(topic, timestamp_extractor=_occurred_ms))
    sdf = sdf.update(lambda _: meter.begin())
    sdf = sdf.tumbling_window(60_000).count().current()
    sdf = sdf.update(counted)
    app.run(sdf, timeout=QUIX_IDLE_S, collect=False)
    return None


def _skip_undecodable(exc: Exception, meter: Meter, app: Any) -> bool:
    """A message that is not JSON counts as consumed (as in the other baselines) and is
    skipped; any other consumer error stops the run."""
    from quixstreams.models.serializers.exceptions import SerializationError

    if not isinstance(exc, SerializationError):
        return False
    meter.begin()
    if meter.add(1):
        app.stop()
    return True


def main(argv: list[str]) -> None:
    name, bootstrap, topic, n, timeout_s, workdir = argv
    meter = Meter(int(n), float(timeout_s))
    skipped = None
    if name == "raw":
        asyncio.run(_raw(bootstrap, topic, meter))
    elif name == "faust_naive":
        _faust_naive(bootstrap, topic, meter, Path(workdir))
    elif name == "quix":
        skipped = _quix(bootstrap, topic, meter, Path(workdir))
    else:
        raise SystemExit(f"unknown baseline {name!r}")
    if skipped:
        result = BaselineResult(name, 0, 0.0, 0.0, 0.0, skipped)
    elif meter.events == 0:
        raise SystemExit(f"no message of {topic} consumed within {timeout_s} s")
    else:
        result = meter.result(name)
    sys.stdout.write(json.dumps(asdict(result)) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
