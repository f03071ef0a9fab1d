"""The local broker's configuration files, written by `herald.kafka.local_broker` on every start.

They live in the package (not under deploy/) so a wheel install finds them too.
"""

from __future__ import annotations

from pathlib import Path

LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
# Each component prints its whole configuration at start-up: thousands of lines.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
"""


def server_properties(
    kdir: Path, port: int, controller: int, sasl_ssl: dict[str, str] | None = None
) -> str:
    """server.properties of a single-node KRaft broker and controller on 127.0.0.1: clients
    on a PLAINTEXT listener, or on a SASL_SSL one configured by `sasl_ssl`
    (local_security.listener_properties)."""
    name = "PLAINTEXT" if sasl_ssl is None else "SASL_SSL"
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller}",
        "listeners": f"{name}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"{name}://127.0.0.1:{port}",
        "listener.security.protocol.map": f"{name}:{name},CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": name,
        **(sasl_ssl or {}),
        "log.dirs": str(kdir / "data"),
        # A single node: every internal topic has one replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "group.initial.rebalance.delay.ms": "0",
        # Herald creates its topics with explicit partitions and retention.
        "auto.create.topics.enable": "false",
    }
    lines = ["# Written by herald.kafka.local_broker on every start: edits are lost."]
    return "\n".join([*lines, *(f"{k}={v}" for k, v in settings.items())]) + "\n"
