"""The local broker's life cycle and Herald's topic administration, on a real Kafka broker."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import TopicPartition

from herald.config import Settings
from herald.errors import HeraldError, ServiceUnavailable
from herald.kafka import local_broker
from herald.kafka.admin import TopicSpec, ensure_topics, herald_topics, recreate_topics
from herald.model import topics


def settings_for(bootstrap: str, **overrides: Any) -> Settings:
    return Settings(kafka_bootstrap=bootstrap, **overrides)


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


async def describe(bootstrap: str, names: list[str]) -> dict[str, tuple[int, dict[str, str]]]:
    """Partition count and non-default config of each topic, as the broker reports them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        partitions = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        responses = await admin.describe_configs(resources)
    finally:
        await admin.close()
    configs = {
        r["resource_name"]: {
            e["config_names"]: e["config_value"]
            for e in r["config_entries"]
            if e["config_source"] == 1  # DYNAMIC_TOPIC_CONFIG: set on the topic itself
        }
        for response in responses
        for r in response.to_object()["resources"]
    }
    return {name: (partitions[name], configs[name]) for name in names}


async def round_trip(bootstrap: str, topic: str) -> bytes | None:
    async with AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all") as producer:
        await producer.send_and_wait(topic, b"hello", key=b"k")
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=unique("t")
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    return message.value


# --- the life cycle of a broker of our own (the session broker must keep running) -----------


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    data_dir = tmp_path_factory.mktemp("own-kafka")
    port = local_broker.free_port()
    local_broker.start(data_dir, port=port)
    yield data_dir, port
    local_broker.stop(data_dir)


def test_start_is_idempotent(own_broker: tuple[Path, int]) -> None:
    data_dir, port = own_broker
    first = local_broker.start(data_dir, port=port)
    again = local_broker.start(data_dir, port=port)
    assert again.already_running
    assert (again.pid, again.bootstrap) == (first.pid, f"127.0.0.1:{port}")
    assert again.log_path == data_dir.resolve() / "kafka" / "server.log"


def test_status_is_one_line(own_broker: tuple[Path, int]) -> None:
    data_dir, port = own_broker
    line = local_broker.status(data_dir, port)
    assert "\n" not in line
    assert f"is running at 127.0.0.1:{port}" in line


def test_start_on_another_port_while_running_fails(own_broker: tuple[Path, int]) -> None:
    data_dir, port = own_broker
    with pytest.raises(HeraldError, match=f"already runs on port {port}"):
        local_broker.start(data_dir, port=local_broker.free_port())


def test_taken_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(HeraldError) as caught:
            local_broker.start(tmp_path, port=port)
        assert local_broker.status(tmp_path, port).endswith(
            f"port {port} is taken by another process"
        )
    message = str(caught.value)
    assert "\n" not in message
    assert f"port {port} on 127.0.0.1 is taken" in message


def test_a_broker_that_dies_is_a_one_line_error_with_its_log(tmp_path: Path) -> None:
    # Storage formatted for another node: the broker exits at once, saying why.
    meta = tmp_path / "kafka" / "data" / "meta.properties"
    meta.parent.mkdir(parents=True)
    meta.write_text("version=1\nnode.id=7\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\n")
    with pytest.raises(HeraldError) as caught:
        local_broker.start(tmp_path, port=local_broker.free_port())
    message = str(caught.value)
    assert "\n" not in message
    assert "exited: " in message and "Stored node id 7" in message
    assert local_broker.status(tmp_path).startswith("Kafka is not running")


def test_missing_tools_are_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no jars cached there
    monkeypatch.setenv("PATH", str(tmp_path))  # neither java nor mvn
    with pytest.raises(HeraldError, match=r"^`java` is not on PATH: .*Java"):
        local_broker.ensure_jars()
    assert not (tmp_path / "herald" / "kafka-4.4.0" / "libs").exists()


async def test_stop_and_restart_keeps_storage_and_topics(own_broker: tuple[Path, int]) -> None:
    data_dir, port = own_broker
    settings = settings_for(f"127.0.0.1:{port}")
    topic = unique("restart")
    await ensure_topics(settings, {topic: TopicSpec(2, {})})
    meta = data_dir / "kafka" / "data" / "meta.properties"
    cluster = meta.read_text()
    pid = local_broker.start(data_dir, port=port).pid

    assert local_broker.stop(data_dir)
    assert process_gone(pid)
    assert local_broker.status(data_dir, port).startswith("Kafka is not running")
    assert not local_broker.stop(data_dir)

    again = local_broker.start(data_dir, port=port)
    assert not again.already_running and again.pid != pid
    assert meta.read_text() == cluster  # formatted once, not again
    # Right after a restart partitions have no leader yet: ensure_topics waits for them.
    await ensure_topics(settings, {topic: TopicSpec(2, {})})
    assert await round_trip(again.bootstrap, topic) == b"hello"


def process_gone(pid: int) -> bool:
    """True when `pid` no longer runs (a zombie that init has not reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


# --- topics and clients, on the session broker -----------------------------------------------


async def test_produce_consume_round_trip(kafka_bootstrap: str) -> None:
    topic = unique("roundtrip")
    await ensure_topics(settings_for(kafka_bootstrap), {topic: TopicSpec(1, {})})
    assert await round_trip(kafka_bootstrap, topic) == b"hello"


def test_herald_topics_follow_the_settings() -> None:
    specs = herald_topics(Settings(partitions=3, shards=5, dedup_horizon_s=5 * 86400))
    assert set(specs) == {
        *topics.INPUT_TOPICS,
        topics.EVENTS,
        topics.CHANGELOG,
        topics.AGGREGATES,
        topics.INVALID,
        topics.RETRIES,
        topics.DEADLETTER,
        topics.ESCALATIONS,
        topics.SIGNALS,
        topics.TRANSITIONS,
        topics.PUBLISHED,
    }
    # The escalation agent's input and table share the shards' partitioning.
    assert {specs[t].partitions for t in (topics.SIGNALS, topics.TRANSITIONS)} == {5}
    assert specs[topics.PUBLISHED].config["retention.ms"] == "-1"
    week = str(7 * 86_400_000)
    assert specs[topics.DELIVERIES] == TopicSpec(
        3, {"retention.ms": week, "message.timestamp.type": "CreateTime"}
    )
    packed = {"max.message.bytes": str(16 * 1024 * 1024)}
    assert specs[topics.EVENTS] == TopicSpec(5, {"retention.ms": week, **packed})
    # Dedup ids live up to two horizons (5 days here): the changelog keeps them that long.
    changelog = {"retention.ms": str(2 * 5 * 86_400_000 + 3_600_000), "cleanup.policy": "delete"}
    assert specs[topics.CHANGELOG] == TopicSpec(5, {**changelog, **packed})
    assert specs[topics.AGGREGATES] == TopicSpec(3, packed)
    assert specs[topics.ESCALATIONS] == TopicSpec(3, {})
    # A short dedup horizon still keeps the changelog two days.
    short = herald_topics(Settings(dedup_horizon_s=60))[topics.CHANGELOG]
    assert short.config["retention.ms"] == str(2 * 86_400_000)


async def test_ensure_topics_creates_them_once(kafka_bootstrap: str) -> None:
    settings = settings_for(kafka_bootstrap, partitions=3, shards=2)
    # Unique names, so an existing broker (HERALD_TEST_KAFKA_BOOTSTRAP) never has them already.
    suffix = uuid.uuid4().hex[:8]
    specs = {f"{name}.{suffix}": spec for name, spec in herald_topics(settings).items()}
    await ensure_topics(settings, specs)
    await ensure_topics(settings, specs)  # idempotent

    described = await describe(kafka_bootstrap, list(specs))
    assert described == {name: (spec.partitions, spec.config) for name, spec in specs.items()}


async def test_recreated_topics_are_empty_and_the_others_untouched(kafka_bootstrap: str) -> None:
    """What `herald bench --ab` does between runs on one broker."""
    settings = settings_for(kafka_bootstrap)
    emptied, kept = unique("emptied"), unique("kept")
    specs = {emptied: TopicSpec(2, {"retention.ms": "-1"}), kept: TopicSpec(1, {})}
    await ensure_topics(settings, specs)
    async with AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all") as producer:
        for topic in specs:
            await producer.send_and_wait(topic, b"x", partition=0)
    await recreate_topics(settings, {emptied: specs[emptied]})
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(t, 0) for t in specs])
    finally:
        await consumer.stop()
    assert {tp.topic: n for tp, n in ends.items()} == {emptied: 0, kept: 1}
    assert (await describe(kafka_bootstrap, [emptied]))[emptied] == (2, {"retention.ms": "-1"})


async def test_unreachable_broker_is_one_line() -> None:
    bootstrap = f"127.0.0.1:{local_broker.free_port()}"
    with pytest.raises(ServiceUnavailable) as caught:
        await ensure_topics(settings_for(bootstrap), {"x": TopicSpec(1, {})}, timeout_s=1)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"Kafka at {bootstrap} is unreachable: ")
    assert message.endswith("(start it with `herald kafka start`)")
