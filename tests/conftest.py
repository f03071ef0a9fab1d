"""Shared fixtures. Tests talk to a real Kafka broker, never a mock."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from herald import local_kafka


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running broker's bootstrap: HERALD_TEST_KAFKA_BOOTSTRAP, or a local one for the session."""
    existing = os.environ.get("HERALD_TEST_KAFKA_BOOTSTRAP")
    if existing:
        yield existing
        return
    data_dir = tmp_path_factory.mktemp("kafka-session")
    broker = local_kafka.start(data_dir, port=local_kafka.free_port())
    try:
        yield broker.bootstrap
    finally:
        local_kafka.stop(data_dir)
