"""Herald's Kafka topics and the admin calls that create them and wait for them to be usable.

Every client takes its connection arguments from `clients.connection(settings)`, so the same
code works against the local broker and a secured remote cluster.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
    for_code,
)

from herald.config import Settings
from herald.errors import HeraldError, ServiceUnavailable
from herald.kafka import clients
from herald.kafka.clients import MAX_MESSAGE_BYTES
from herald.model import topics

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
INPUT_RETENTION_MS = 7 * DAY_MS
# One attempt never waits longer than this, so a deadline is checked often enough.
ATTEMPT_TIMEOUT_S = 5.0
POLL_S = 0.2


class Refused(HeraldError):
    """Kafka refused Herald's login or TLS: trying again would not help."""


@dataclass(frozen=True)
class TopicSpec:
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def herald_topics(settings: Settings) -> dict[str, TopicSpec]:
    """Every topic Herald reads or writes, with its partitions and per-topic config."""
    n = settings.partitions
    # Input records keep the producer's timestamp (CreateTime), and retention is explicit so a
    # broker with another default does not silently keep or drop them.
    inputs = {"retention.ms": str(INPUT_RETENTION_MS), "message.timestamp.type": "CreateTime"}
    # The changelog must outlive the dedup ids (kept up to twice the horizon, tables/dedup.py),
    # or a restored shard forgets event ids.
    changelog_ms = max(2 * settings.dedup_horizon_s * 1000 + HOUR_MS, 2 * DAY_MS)
    specs = {name: TopicSpec(n, dict(inputs)) for name in topics.INPUT_TOPICS}
    # Internal topics carry packed messages: a batch's changelog record can exceed 1 MB.
    packed = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}
    specs[topics.EVENTS] = TopicSpec(
        settings.shards, {"retention.ms": str(INPUT_RETENTION_MS), **packed}
    )
    specs[topics.CHANGELOG] = TopicSpec(
        settings.shards,
        {"retention.ms": str(changelog_ms), "cleanup.policy": "delete", **packed},
    )
    for name in (
        topics.INVALID,
        topics.RETRIES,
        topics.DEADLETTER,
        topics.ESCALATIONS,
    ):
        specs[name] = TopicSpec(n)
    specs[topics.AGGREGATES] = TopicSpec(n, dict(packed))
    # One partition per shard: the escalation agents' table is partitioned the same way.
    specs[topics.SIGNALS] = TopicSpec(settings.shards, dict(packed))
    # Transitions are few; the publisher's changelog must cover every transition it may read
    # again, so both are kept.
    forever = {"retention.ms": "-1", "cleanup.policy": "delete"}
    specs[topics.TRANSITIONS] = TopicSpec(settings.shards, dict(forever))
    specs[topics.PUBLISHED] = TopicSpec(settings.shards, dict(forever))
    return specs


async def wait_for_broker(
    settings: Settings, timeout_s: float = 30.0, check: Callable[[], None] | None = None
) -> None:
    """Return once a metadata request lists at least one broker.

    `check` runs before every attempt and may raise to give up early (e.g. the local broker's
    process died). Raises ServiceUnavailable (one line) when the deadline passes, Refused at
    once when the broker refuses the login or TLS.
    """
    deadline = time.monotonic() + timeout_s
    hosts = _hosts(settings.kafka_bootstrap)
    clients.connection(settings)  # a missing CA file is a HeraldError now, not retried
    reason, hint = "no attempt made", True
    while True:
        if check is not None:
            check()
        attempt_s = min(ATTEMPT_TIMEOUT_S, max(deadline - time.monotonic(), 1.0))
        try:
            await asyncio.wait_for(_cluster_brokers(settings, hosts), attempt_s)
            return
        except Refused:
            raise
        except (KafkaError, OSError, TimeoutError, HeraldError) as exc:
            # Herald's own reasons say what to do; the others may be a broker not started.
            reason, hint = _reason(exc), not isinstance(exc, HeraldError)
        if time.monotonic() >= deadline:
            raise ServiceUnavailable(
                f"Kafka at {settings.kafka_bootstrap} is unreachable: {reason}"
                + (" (start it with `herald kafka start`)" if hint else "")
            )
        await asyncio.sleep(POLL_S)


async def ensure_topics(
    settings: Settings, specs: dict[str, TopicSpec], timeout_s: float | None = None
) -> None:
    """Create the missing topics of `specs`, then wait until every partition has a leader.
    Gives up after `timeout_s` (default HERALD_CONNECT_TIMEOUT_S)."""
    timeout_s = settings.connect_timeout_s if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    await wait_for_broker(settings, timeout_s)
    async with _admin(settings) as admin:
        existing = set(await admin.list_topics())
        missing = {name: spec for name, spec in specs.items() if name not in existing}
        if missing:
            brokers = (await admin.describe_cluster())["brokers"]
            await _create(admin, missing, replication=min(3, len(brokers)))
        await _wait_for_leaders(admin, specs, deadline)


async def recreate_topics(settings: Settings, specs: dict[str, TopicSpec]) -> None:
    """Delete the topics of `specs` and create them again, empty (`herald bench --ab`: every
    run gets fresh outputs from one broker, warmed up once)."""
    deadline = time.monotonic() + settings.connect_timeout_s
    async with _admin(settings) as admin:
        doomed = set(specs) & set(await admin.list_topics())
        if doomed:
            await admin.delete_topics(sorted(doomed))
        while doomed & set(await admin.list_topics()):  # deleted, not yet gone
            if time.monotonic() >= deadline:
                raise ServiceUnavailable(f"Kafka topics not deleted: {', '.join(sorted(doomed))}")
            await asyncio.sleep(POLL_S)
    await ensure_topics(settings, specs)


async def topic_partitions(settings: Settings, topic: str) -> list[int]:
    """The partition numbers of `topic`, sorted. Raises HeraldError if it does not exist."""
    async with _admin(settings) as admin:
        (described,) = await admin.describe_topics([topic])
    if described["error_code"] or not described["partitions"]:
        raise HeraldError(f"topic {topic} does not exist")
    return sorted(p["partition"] for p in described["partitions"])


async def _cluster_brokers(settings: Settings, hosts: list[tuple[str, int]]) -> list[Any]:
    # One connection of our own first: while nothing listens, aiokafka would log an ERROR line
    # for every attempt, and its message ("Unable to bootstrap from [...]") hides the real
    # cause, a refused login or certificate among them.
    await _any_host_answers(settings, hosts)
    async with _admin(settings) as admin:
        brokers: list[Any] = (await admin.describe_cluster())["brokers"]
    if not brokers:
        raise HeraldError("the cluster lists no brokers yet")
    return brokers


async def _any_host_answers(settings: Settings, hosts: list[tuple[str, int]]) -> None:
    """Connect, with TLS and the SASL login if configured, to the first host that accepts.
    A refused login or certificate is final (Refused), not retried."""
    security = {k: v for k, v in clients.connection(settings).items() if k != "bootstrap_servers"}
    error: Exception = OSError("no bootstrap server")
    for host, port in hosts:
        try:
            conn = await create_conn(
                host, port, request_timeout_ms=int(ATTEMPT_TIMEOUT_S * 1000), **security
            )
        except (SaslAuthenticationFailed, UnsupportedSaslMechanismError) as exc:
            raise Refused(
                f"Kafka at {host}:{port} refused the {settings.kafka_sasl_mechanism} login of "
                f"user {settings.kafka_sasl_username!r}: {exc.args[0] if exc.args else exc}"
            ) from None
        except ssl.SSLError as exc:
            raise Refused(
                f"TLS with Kafka at {host}:{port} failed: {exc.reason or exc} "
                "(HERALD_KAFKA_SSL_CAFILE names the CA that signed its certificate)"
            ) from None
        except KafkaConnectionError as exc:  # TCP connected, then the broker hung up
            error = exc
            if settings.kafka_security_protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
                error = HeraldError(
                    f"{host}:{port} closed the connection (does its listener expect TLS? "
                    f"HERALD_KAFKA_SECURITY_PROTOCOL is {settings.kafka_security_protocol})"
                )
        except (OSError, KafkaError) as exc:
            error = exc
        else:
            conn.close()
            return
    raise error


def _hosts(bootstrap: str) -> list[tuple[str, int]]:
    """`host:port,[v6]:port` as (host, port) pairs."""
    hosts = []
    for server in filter(None, (s.strip() for s in bootstrap.split(","))):
        host, _, port = server.rpartition(":")
        if not port.isdigit():
            raise HeraldError(f"Kafka bootstrap {bootstrap!r} is not host:port[,host:port...]")
        hosts.append((host.strip("[]") or "localhost", int(port)))
    if not hosts:
        raise HeraldError("the Kafka bootstrap servers are empty (HERALD_KAFKA_BOOTSTRAP)")
    return hosts


@asynccontextmanager
async def _admin(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(
        **clients.connection(settings), request_timeout_ms=int(ATTEMPT_TIMEOUT_S * 1000)
    )
    try:
        await admin.start()
        yield admin
    finally:
        await admin.close()


async def _create(
    admin: AIOKafkaAdminClient, specs: dict[str, TopicSpec], replication: int
) -> None:
    new = [
        NewTopic(name, s.partitions, replication, topic_configs=s.config)
        for name, s in specs.items()
    ]
    response = await admin.create_topics(new)
    for result in response.to_object()["topic_errors"]:
        code = result["error_code"]
        # A concurrent caller (another worker, the CLI) may have created it first: that's fine.
        if code in (0, TopicAlreadyExistsError.errno):
            continue
        raise HeraldError(
            f"cannot create Kafka topic {result['topic']}: {for_code(code).__name__}: "
            f"{result.get('error_message') or ''}".rstrip(": ")
        )


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, specs: dict[str, TopicSpec], deadline: float
) -> None:
    # Right after a (re)start the broker answers metadata before each partition has a leader,
    # and producers then see NOT_LEADER_FOR_PARTITION (FACTS).
    while True:
        described = await admin.describe_topics(list(specs))
        waiting = [t["topic"] for t in described if not _has_leaders(t)]
        if not waiting:
            return
        if time.monotonic() >= deadline:
            raise ServiceUnavailable(
                f"Kafka topics without a partition leader: {', '.join(sorted(waiting))}"
            )
        await asyncio.sleep(POLL_S)


def _has_leaders(topic: dict[str, Any]) -> bool:
    partitions = topic["partitions"]
    return (
        topic["error_code"] == 0
        and bool(partitions)
        and all(p["error_code"] == 0 and p["leader"] >= 0 for p in partitions)
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {ATTEMPT_TIMEOUT_S:g} s"
    text = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, HeraldError):  # already says what is wrong
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
