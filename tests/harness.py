"""Test helpers: the child-process runner is herald.processes.child (demo and bench use it too)."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clickhouse_connect.driver import Client

from herald.processes.child import HeraldProcess, wait_for
from herald.sinks.clickhouse import connect
from herald.sinks.migrations import migrate

__all__ = ["Herald", "migrated_chdb", "wait_for"]


def Herald(data_dir: Path, bootstrap: str, **env: Any) -> HeraldProcess:
    """A `herald run` child that publishes snapshots often, so tests see results sooner."""
    return HeraldProcess(data_dir, bootstrap, **{"snapshot_interval_s": 0.5, **env})


@contextmanager
def migrated_chdb(path: Path) -> Iterator[Client]:
    """Embedded ClickHouse in `path` with Herald's schema; closed after (chDB allows one path
    per process while any client is open)."""
    client = connect(f"chdb://{path.resolve()}")
    try:
        migrate(client)
        yield client
    finally:
        client.close()
