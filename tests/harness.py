"""Test helpers: the child-process runner is herald.processes.child (demo and bench use it too)."""

from pathlib import Path
from typing import Any

from herald.processes.child import HeraldProcess, wait_for

__all__ = ["Herald", "wait_for"]


def Herald(data_dir: Path, bootstrap: str, **env: Any) -> HeraldProcess:
    """A `herald run` child that publishes snapshots often, so tests see results sooner."""
    return HeraldProcess(data_dir, bootstrap, **{"snapshot_interval_s": 0.5, **env})
