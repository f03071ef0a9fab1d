"""aiokafka clients configured once for every Herald role.

Large fetches and requests matter: the hot path moves packed messages of thousands of events.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.helpers import create_ssl_context

from herald.config import Settings
from herald.errors import HeraldError

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
FETCH_MIN_BYTES = 1024 * 1024


def connection(settings: Settings) -> dict[str, Any]:
    """Connection arguments shared by every aiokafka client Herald creates; the Faust app's
    credentials are made from them too (processes/app.py)."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.startswith("SASL_"):
        password = settings.sasl_password
        assert password is not None  # config.py requires it with SASL
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = password.get_secret_value()
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        cafile = settings.kafka_ssl_cafile
        # Checked here, not at start: `herald kafka start` makes the local broker's CA file.
        if cafile is not None and not cafile.is_file():
            raise HeraldError(f"HERALD_KAFKA_SSL_CAFILE {cafile} is not a file")
        kwargs["ssl_context"] = create_ssl_context(cafile=None if cafile is None else str(cafile))
    return kwargs


def producer(settings: Settings, transactional_id: str | None = None) -> AIOKafkaProducer:
    """The producer every role shares, or (with `transactional_id`) one whose sends commit
    together with the state change that records them, in one Kafka transaction."""
    transactional = {"transactional_id": transactional_id} if transactional_id else {}
    return AIOKafkaProducer(
        **connection(settings),
        **transactional,
        acks="all",
        linger_ms=0,  # messages are already batches of thousands of events
        # Packed JSON shrinks to ~22 %: the broker and both consumers of herald.events move a
        # fifth of the bytes. zstd costs 0.4 CPU-us per event to compress here; aiokafka's lz4
        # (fixed at level 9) cost 2.2. End to end: 75-77 k -> 94-99 k events/s.
        compression_type="zstd",
        max_batch_size=1024 * 1024,
        max_request_size=MAX_MESSAGE_BYTES,
        request_timeout_ms=30000,
    )


def consumer(
    settings: Settings,
    group: str,
    topics: Iterable[str],
    listener: ConsumerRebalanceListener | None = None,
    fetch_wait_ms: int = 0,
) -> AIOKafkaConsumer:
    """A group member that commits by hand (after its work is safely done).

    Static membership (KIP-345): a restarted process (same host and web port) takes its
    partitions back at once instead of waiting for its old session to time out.

    `fetch_wait_ms` > 0: the broker holds each fetch until FETCH_MIN_BYTES are there or that
    time passed, so a consumer that keeps up gets fewer, larger batches instead of one per
    message (each batch has a fixed cost: a ClickHouse insert, a changelog round trip).
    """
    batching = {"fetch_min_bytes": FETCH_MIN_BYTES, "fetch_max_wait_ms": fetch_wait_ms}
    client = AIOKafkaConsumer(
        **connection(settings),
        group_id=f"{settings.group_prefix}-{group}",
        group_instance_id=f"{group}-{socket.gethostname()}-{settings.web_port}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # Records of aborted transactions (a shard's changes and outputs) are never seen.
        isolation_level="read_committed",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        fetch_max_bytes=4 * MAX_MESSAGE_BYTES,
        session_timeout_ms=10000,
        heartbeat_interval_ms=2000,
        max_poll_interval_ms=300000,
        **(batching if fetch_wait_ms > 0 else {}),
    )
    client.subscribe(list(topics), listener=listener)
    return client


def reader(settings: Settings) -> AIOKafkaConsumer:
    """A consumer outside any group, for reading a changelog partition from an offset; it skips
    what aborted transactions wrote."""
    return AIOKafkaConsumer(
        **connection(settings),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        fetch_max_bytes=4 * MAX_MESSAGE_BYTES,
    )
