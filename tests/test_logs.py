"""HERALD_LOG_FORMAT=json: one JSON object per line with role, stage, batch (and shard where a
line names one); credentials masked in both formats."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from herald.config import Settings
from herald.load.produce import open_producer
from herald.model import topics
from herald.processes.child import HeraldProcess, wait_for
from herald.telemetry import logs, outage

SECRET = "s3cret-pw-16"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("herald.test_logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, stream, handler
    finally:
        logger.removeHandler(handler)


def test_json_lines_carry_role_stage_batch_and_shard(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured
    handler.setFormatter(logs.JsonFormatter("worker"))
    logger.warning("outside any batch")
    token = logs.BATCH.set(("shards", 41))
    try:
        logger.warning("shard %s: slow", 3, extra={"shard": 3})
    finally:
        logs.BATCH.reset(token)
    first, second = map(orjson.loads, stream.getvalue().splitlines())
    assert first["role"] == "worker" and "stage" not in first and "batch" not in first
    assert (second["stage"], second["batch"], second["shard"]) == ("shards", 41, 3)
    assert second["message"] == "shard 3: slow" and second["level"] == "warning"


@pytest.mark.parametrize("fmt", ["human", "json"])
def test_credentials_in_urls_are_masked(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler], fmt: str
) -> None:
    logger, stream, handler = captured
    handler.addFilter(logs.Redact())
    if fmt == "json":
        handler.setFormatter(logs.JsonFormatter("sink"))
    logger.warning("cannot reach %s", f"http://herald:{SECRET}@clickhouse:8123/")
    assert SECRET not in stream.getvalue()
    assert "http://herald:***@clickhouse:8123/" in stream.getvalue()


def test_a_kafka_outage_is_two_lines_not_one_per_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = logging.getLogger("aiokafka.test_outage")  # an aiokafka logger created late
    watch = outage.KafkaOutage(quiet_s=0)
    client.addFilter(watch)
    try:
        with caplog.at_level(logging.WARNING):
            # Alone (a fresh broker's coordinator not ready yet) a group message is shown.
            client.error("Group Coordinator Request failed: %s", "GroupCoordinatorNotAvailable")
            for _ in range(500):  # what aiokafka logs while no broker answers
                client.error("Unable to update metadata from %s", [1])
                client.error("Unable connect to node with id %s: %s", 1, "[Errno 111] refused")
            client.error("Topic %s not found in cluster metadata", "t")  # not about reaching it
            watch.report()  # the first line
            watch.report()  # quiet for quiet_s: back
            watch.report()  # nothing more to say
    finally:
        client.removeFilter(watch)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "Group Coordinator Request failed: GroupCoordinatorNotAvailable",
        "Topic t not found in cluster metadata",
        "Kafka is unreachable (Unable connect to node with id 1: [Errno 111] refused): the"
        " clients retry by themselves and Herald resumes where it was",
        "Kafka answers again after 0 s (1000 client errors held back)",
    ]


def json_lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def _produce_invalid(settings: Settings) -> None:
    async with open_producer(settings) as producer:
        await producer.send_and_wait(topics.DELIVERIES, b"{not json")


def test_a_worker_logs_json_lines_only(tmp_path: Path, broker: str) -> None:
    worker = HeraldProcess(tmp_path / "worker", broker, role="worker", log_format="json",
                           kafka_sasl_password=SECRET,
                           clickhouse_dsn=f"http://herald:{SECRET}@127.0.0.1:1")  # fmt: skip
    worker.start()
    try:
        asyncio.run(_produce_invalid(worker.settings))
        line = wait_for(lambda: next((d for d in json_lines(worker.log_path)
                                      if "invalid" in d["message"]), None), 60,
                        "the worker to log the invalid message")  # fmt: skip
        assert (line["role"], line["stage"], line["level"]) == ("worker", "ingest", "warning")
        assert isinstance(line["batch"], int) and line["batch"] >= 1
    finally:
        worker.stop()
    text = worker.log_path.read_text()
    assert SECRET not in text
    assert all(isinstance(d, dict) and d["role"] == "worker" for d in json_lines(worker.log_path))
