"""The command line as a user meets it: real processes, one-line errors, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from herald.kafka import local_broker
from herald.processes.child import HeraldProcess
from tests.harness import Herald


def herald(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "herald", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.fixture(scope="module")
def running(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HeraldProcess]:
    process = Herald(tmp_path_factory.mktemp("cli"), kafka_bootstrap).start()
    try:
        yield process
    finally:
        process.stop()


def cli_env(process: HeraldProcess) -> dict[str, str]:
    return {k: v for k, v in process.env.items() if k.startswith("HERALD_")}


def test_help_lists_every_setting() -> None:
    result = herald("--help")
    assert result.returncode == 0
    for name in ("HERALD_KAFKA_BOOTSTRAP", "HERALD_CLICKHOUSE_DSN", "HERALD_DATA_DIR",
                 "HERALD_KAFKA_SASL_MECHANISM", "HERALD_GRACE_S"):  # fmt: skip
        assert name in result.stdout


def test_query_goes_through_the_running_process(running: HeraldProcess) -> None:
    result = herald("query", "SELECT count() AS n FROM broadcast_summary FORMAT JSONEachRow",
                    **cli_env(running))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('{"n":')


def test_bad_sql_is_one_line(running: HeraldProcess) -> None:
    result = herald("query", "SELECT nope FROM nowhere", **cli_env(running))
    assert result.returncode == 1
    assert result.stderr.startswith("herald: ") and len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_report_is_written_by_the_running_process(running: HeraldProcess, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = herald("report", "--out", str(out), **cli_env(running))
    assert result.returncode == 0, result.stderr
    assert out.read_text().lstrip().lower().startswith("<!doctype html")


@pytest.mark.parametrize("command", [("run",), ("worker",), ("simulate", "--duration", "1")])
def test_unreachable_kafka_is_one_line(command: tuple[str, ...], tmp_path: Path) -> None:
    port = str(local_broker.free_port())
    result = herald(*command, HERALD_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}",
                    HERALD_DATA_DIR=str(tmp_path), HERALD_CONNECT_TIMEOUT_S="2")  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("herald: ")
    assert "Traceback" not in result.stderr and port in result.stderr


def test_schema_export_writes_the_three_contracts(tmp_path: Path) -> None:
    result = herald("schema", "export", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "acks.schema.json", "broadcasts.schema.json", "deliveries.schema.json"
    ]  # fmt: skip
