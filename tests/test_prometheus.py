"""A real Prometheus scrapes a running `herald run` (and its ingest child) under live load.

PromQL answers agree with what the test produced, with `pipeline_stats_1m` and with the
tables; every Herald / Runtime panel's query returns series; the alert rules load, evaluate
and catch a process going down; `herald status` reads the same processes.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from herald.config import Settings
from herald.dashboards.boards.runtime import RUNTIME
from herald.kafka import local_broker
from herald.load.simulate import Scenario, run_live
from herald.processes.child import HeraldProcess
from tests.harness import Herald, wait_for

REPO = Path(__file__).resolve().parent.parent
ALERTS = REPO / "deploy/prometheus/alerts.yml"
PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")
# Long enough for rate()'s 30 s window to lie inside the load.
RATE, SECONDS, WINDOW_S = 1000.0, 45.0, 30
NEEDS = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus not installed (Debian package `prometheus`; `make test` installs it "
    "where apt exists)",
)


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector (raises on a PromQL error)."""
        args = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{args}", timeout=10) as response:
            answer = orjson.loads(response.read())
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}", timeout=10) as response:
            return orjson.loads(response.read())["data"]


@dataclass
class Stack:
    herald: HeraldProcess
    prometheus: Prometheus
    targets: list[str]
    produced: dict[str, int] = field(default_factory=dict)
    rates: tuple[float, float] = (0.0, 0.0)  # PromQL's, and the producer's own


class Sent:
    """The producer's progress lines ("N messages sent (R/s)") as (time, N)."""

    def __init__(self) -> None:
        self.points: list[tuple[float, int]] = []

    def __call__(self, line: str) -> None:
        self.points.append((time.monotonic(), int(line.split()[0])))

    def rate(self, window_s: float) -> float | None:
        """Messages/s over the last `window_s`, once the load has run that long."""
        if not self.points or self.points[-1][0] - self.points[0][0] < window_s:
            return None
        end_t, end_n = self.points[-1]
        start_t, start_n = next(p for p in reversed(self.points) if end_t - p[0] >= window_s)
        return (end_n - start_n) / (end_t - start_t)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _status(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as response:
            doc: dict[str, Any] = orjson.loads(response.read())
            return doc
    except OSError:
        return None


def start_prometheus(work: Path, targets: list[str]) -> Prometheus:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": "herald", "static_configs": [{"targets": targets}]}],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = local_broker.free_port()
    assert PROMETHEUS is not None
    log = (work / "prometheus.log").open("ab")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work}/tsdb",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)  # fmt: skip
    prometheus = Prometheus(f"http://127.0.0.1:{port}", proc)
    wait_for(lambda: _ready(prometheus.url), 60, "Prometheus to be ready")
    return prometheus


def live_load(stack: Stack, settings: Settings) -> None:
    """Produce at RATE for SECONDS; meanwhile PromQL's input rate over WINDOW_S must match
    the rate the producer reports over the same window (it may fall short of RATE here)."""
    sent = Sent()

    def produce() -> None:
        scenario = Scenario(seed=16, invalid=20)
        stack.produced = asyncio.run(run_live(settings, RATE, SECONDS, sent, scenario))

    def agree() -> tuple[float, float] | None:
        promql = stack.prometheus.value(f"sum(rate(herald_events_in_total[{WINDOW_S}s]))")
        producer = sent.rate(WINDOW_S)
        if promql is None or producer is None or not _near(promql, producer):
            return None
        return promql, producer

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        stack.rates = wait_for(agree, SECONDS, "PromQL's input rate to match the producer's")
    finally:
        producer.join()


def _near(value: float, expected: float) -> bool:
    """Within 15 %: rate() extrapolates, and scrapes and progress lines tick each second."""
    return 0.85 * expected < value < 1.15 * expected


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("prometheus")
    broker = local_broker.start(work / "broker", port=local_broker.free_port())
    herald = Herald(work / "herald", broker.bootstrap, idle_partition_s=2, ingest_processes=1)
    prometheus: Prometheus | None = None
    try:
        herald.start()
        port = herald.settings.web_port
        children = wait_for(lambda: (s := _status(port)) and s["children_web_ports"], 60,
                            "the ingest child's port")  # fmt: skip
        wait_for(lambda: _status(children[0]), 60, "the ingest child to answer")
        targets = [f"127.0.0.1:{p}" for p in (port, *children)]
        prometheus = start_prometheus(work, targets)
        running = Stack(herald, prometheus, targets)
        wait_for(lambda: prometheus.value('sum(up{job="herald"})') == len(targets), 30,
                 "Prometheus to scrape every Herald process")  # fmt: skip
        live_load(running, Settings(kafka_bootstrap=broker.bootstrap))
        yield running
    finally:
        herald.stop()
        if prometheus is not None:
            prometheus.proc.terminate()
            prometheus.proc.wait(30)
        local_broker.stop(work / "broker")


def _sum(herald: HeraldProcess, sql: str) -> int:
    return int(herald.query(sql)[0]["n"])


@NEEDS
def test_promql_counts_agree_with_the_load_and_with_pipeline_stats(stack: Stack) -> None:
    prom, herald, produced = stack.prometheus, stack.herald, sum(stack.produced.values())
    assert _near(*stack.rates) and stack.rates[1] > RATE / 4, stack.rates
    wait_for(lambda: prom.value("sum(herald_events_in_total)") == produced, 60,
             "Prometheus to count every message produced")  # fmt: skip
    by_topic = {r["metric"]["topic"]: float(r["value"][1])
                for r in prom.query("sum by (topic) (herald_events_in_total)")}  # fmt: skip
    assert by_topic == {topic: float(n) for topic, n in stack.produced.items()}
    ingest = "component LIKE 'ingest:%'"
    stats = f"SELECT sum(events_in) AS n FROM pipeline_stats_1m FINAL WHERE {ingest}"
    wait_for(lambda: _sum(herald, stats) == produced, 60, "pipeline_stats_1m to hold the load")
    invalid = wait_for(lambda: _sum(herald, "SELECT count() AS n FROM invalid_events FINAL"), 60,
                       "invalid events stored")  # fmt: skip
    assert invalid > 0
    wait_for(lambda: prom.value("sum(herald_invalid_events_total)") == invalid, 30,
             "Prometheus's invalid count to reach the table's")  # fmt: skip
    assert _sum(herald, "SELECT sum(invalid) AS n FROM pipeline_stats_1m FINAL") == invalid
    reasons = {r["metric"]["reason"] for r in prom.query("herald_invalid_events_total")}
    assert reasons <= {"missing_field", "bad_field", "unsupported_version", "not_json",
                       "no_value", "not_object", "from_the_future", "other"}  # fmt: skip


@NEEDS
def test_lag_per_stage_and_partition_drains_to_zero(stack: Stack) -> None:
    prom = stack.prometheus
    stages = {r["metric"]["stage"] for r in prom.query("herald_consumer_lag_records")}
    assert {"ingest", "shards", "sink"} <= stages
    ingest = prom.query('herald_consumer_lag_records{stage="ingest"}')
    assert {r["metric"]["topic"] for r in ingest} == set(stack.produced)
    assert all(r["metric"]["instance"] == stack.targets[1] for r in ingest), "the child ingests"
    wait_for(lambda: prom.value("max(herald_consumer_lag_records)") == 0, 60,
             "every stage to catch up")  # fmt: skip


@NEEDS
@pytest.mark.parametrize("panel", RUNTIME.panels, ids=lambda p: p.title)
def test_every_runtime_panel_returns_series(stack: Stack, panel: Any) -> None:
    # Grafana's $__rate_interval here: four scrape intervals at least, over a 30 s step.
    result = stack.prometheus.query(panel.sql.replace("$__rate_interval", "30s"))
    assert result, f"no series from: {panel.sql}"


@NEEDS
def test_status_reads_the_running_processes(stack: Stack) -> None:
    env = {k: v for k, v in stack.herald.env.items() if k != "HERALD_CONFIG"}
    done = subprocess.run([sys.executable, "-m", "herald", "status"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for target, role in zip(stack.targets, ("run", "ingest"), strict=True):
        assert any(line.startswith(target) and f" {role} " in line for line in out.splitlines())
    assert "lag per stage:  " in out and "shards 0" in out and "ingest 0" in out
    assert "rates:          events in " in out
    open_now = stack.herald.query("SELECT count() AS n FROM open_escalations")[0]["n"]
    assert f"open escalations: {open_now} (details: herald escalations)" in out
    assert "ingest: " in out.split("last errors:")[1], "the invalid-input warnings are listed"


@NEEDS
def test_default_logs_stay_human(stack: Stack) -> None:
    lines = [line for line in stack.herald.log_path.read_text().splitlines() if "invalid" in line]
    assert lines and not any(line.lstrip().startswith("{") for line in lines)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package `prometheus`)")
def test_promtool_accepts_the_alert_rules_and_the_compose_config() -> None:
    assert PROMTOOL is not None
    rules = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True,
                           text=True, timeout=60)  # fmt: skip
    assert rules.returncode == 0 and "SUCCESS: 5 rules found" in rules.stdout, rules.stdout
    compose = REPO / "deploy/prometheus/prometheus.yml"
    config = subprocess.run([PROMTOOL, "check", "config", str(compose)], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert config.returncode == 0, config.stdout + config.stderr


@NEEDS
def test_alert_rules_evaluate_and_catch_a_process_going_down(stack: Stack) -> None:
    """Last in the module: it stops Herald."""
    prom = stack.prometheus
    def evaluated() -> list[dict[str, Any]]:
        groups = prom.api("rules")["groups"]
        return [g for g in groups if all(not r["lastEvaluation"].startswith("0001")
                                         for r in g["rules"])]  # fmt: skip

    (group,) = wait_for(evaluated, 30, "the rules evaluated")
    assert {r["name"] for r in group["rules"]} == {
        "HeraldProcessDown", "HeraldConsumerLagGrowing", "HeraldSinkNotInserting",
        "HeraldSinkInsertsFailing", "HeraldInvalidRateSpike"}  # fmt: skip
    assert all(r["health"] == "ok" for r in group["rules"]), group["rules"]
    assert not prom.api("alerts")["alerts"], "nothing is wrong yet"
    stack.herald.stop()

    def down() -> set[str]:
        alerts = prom.api("alerts")["alerts"]
        return {a["labels"]["instance"] for a in alerts
                if a["labels"]["alertname"] == "HeraldProcessDown"}  # fmt: skip

    wait_for(lambda: down() == set(stack.targets), 30, "HeraldProcessDown for both processes")
