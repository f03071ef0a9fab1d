"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

Every Herald service runs a real `herald` subcommand (read from the installed CLI's --help)
with real flags, its environment names are Herald settings, and ports, volumes and service
references are consistent.
"""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from herald.config import Settings

REPO = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
HERALD = {name: s for name, s in SERVICES.items() if "build" in s}


@cache
def cli_help(*words: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "herald", *words, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def subcommands(*words: str) -> set[str]:
    """The names under `Commands:` in `herald [words] --help`."""
    text = cli_help(*words)
    if "Commands:" not in text:
        return set()
    section = text.split("Commands:", 1)[1].split("\n\n", 1)[0]
    return {m.group(1) for m in re.finditer(r"^\s{2}(\S+)", section, re.MULTILINE)}


def test_the_stack_has_every_part() -> None:
    assert {"kafka", "clickhouse", "grafana", "migrate", "worker", "sink", "simulate"} <= set(
        SERVICES
    )
    assert SERVICES["worker"]["deploy"]["replicas"] == 2
    assert SERVICES["simulate"]["profiles"] == ["simulate"]
    assert SERVICES["migrate"]["command"] == ["db", "migrate"]
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


@pytest.mark.parametrize("name", HERALD)
def test_service_command_is_a_real_herald_subcommand(name: str) -> None:
    command = HERALD[name]["command"]
    words = [w for w in command if not w.startswith("-")]
    # Walk the command groups (`db migrate`) down to a leaf command.
    path: list[str] = []
    for word in words:
        if not subcommands(*path):
            break
        assert word in subcommands(*path), f"`herald {' '.join(path)}` has no {word!r}"
        path.append(word)
    assert not subcommands(*path), f"`herald {' '.join(path)}` needs a subcommand"
    for flag in (w for w in command if w.startswith("--")):
        assert re.search(rf"(^|\s){re.escape(flag)}\b", cli_help(*path)), flag


@pytest.mark.parametrize("name", HERALD)
def test_environment_names_are_herald_settings(name: str) -> None:
    settings = {f"HERALD_{field.upper()}" for field in Settings.model_fields}
    environment = HERALD[name]["environment"]
    assert set(environment) <= settings
    # The values parse as Herald settings, too.
    values = {k.removeprefix("HERALD_").lower(): v for k, v in environment.items()}
    Settings(**values)


def test_herald_services_reach_kafka_and_clickhouse_inside_the_network() -> None:
    for service in HERALD.values():
        env = service["environment"]
        host, port = env["HERALD_KAFKA_BOOTSTRAP"].split(":")
        assert host in SERVICES
        kafka = SERVICES[host]["environment"]
        assert f"PLAINTEXT://{host}:{port}" in kafka["KAFKA_ADVERTISED_LISTENERS"]
        dsn = urlparse(env["HERALD_CLICKHOUSE_DSN"])
        clickhouse = SERVICES[dsn.hostname]["environment"]
        assert dsn.port == 8123
        assert (dsn.username, dsn.password) == (
            clickhouse["CLICKHOUSE_USER"],
            clickhouse["CLICKHOUSE_PASSWORD"],
        )


def test_grafana_gets_what_the_provisioning_files_expand() -> None:
    grafana = SERVICES["grafana"]["environment"]
    for source in ("herald.yaml", "prometheus.yaml"):
        provisioning = (REPO / "dashboards/provisioning/datasources" / source).read_text()
        for name in re.findall(r"\$(\w+)", provisioning):
            assert name in grafana, f"Grafana's environment lacks {name}"
    clickhouse = SERVICES["clickhouse"]["environment"]
    assert grafana["CLICKHOUSE_HOST"] == "clickhouse"
    assert grafana["CLICKHOUSE_PASSWORD"] == clickhouse["CLICKHOUSE_PASSWORD"]
    assert grafana["CLICKHOUSE_DATABASE"] == clickhouse["CLICKHOUSE_DB"]
    assert grafana["GF_PLUGINS_PREINSTALL_SYNC"].startswith("grafana-clickhouse-datasource@")
    home = Path(grafana["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert f"./dashboards/json:{home.parent}:ro" in SERVICES["grafana"]["volumes"]
    assert (REPO / "dashboards/json" / home.name).is_file()


def test_ports_are_unique_and_map_to_listening_ports() -> None:
    host_ports = [p.split(":")[0] for s in SERVICES.values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports))
    assert "8123:8123" in SERVICES["clickhouse"]["ports"]
    assert "3000:3000" in SERVICES["grafana"]["ports"]
    listeners = SERVICES["kafka"]["environment"]["KAFKA_LISTENERS"]
    for mapping in SERVICES["kafka"]["ports"]:
        assert f":{mapping.split(':')[1]}" in listeners


def test_volumes_exist() -> None:
    declared = set(COMPOSE["volumes"])
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
    assert "volumes" not in SERVICES["worker"], "replicas must not share a RocksDB directory"


def test_dependencies_name_services() -> None:
    for service in SERVICES.values():
        assert set(service.get("depends_on", {})) <= set(SERVICES)
    assert HERALD["worker"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    for name in ("kafka", "clickhouse"):
        assert SERVICES[name]["healthcheck"]["test"]


def test_dockerfile_builds_herald_from_the_repo() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (\S+)", dockerfile, re.MULTILINE):
        if not source.startswith("--"):
            assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
    assert 'ENTRYPOINT ["herald"]' in dockerfile
    ignored = (REPO / ".dockerignore").read_text().split()
    assert "tests" in ignored and ".git" in ignored


def test_prometheus_scrapes_every_herald_process_and_loads_the_alerts() -> None:
    prometheus = SERVICES["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus/herald:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/herald/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    assert all((REPO / "deploy/prometheus" / f).is_file() for f in config["rule_files"])
    (job,) = config["scrape_configs"]
    (discovery,) = job["dns_sd_configs"]
    long_running = {n for n, s in HERALD.items() if s["command"][0] in ("worker", "sink", "run")}
    assert set(discovery["names"]) == long_running
    for name in long_running:
        env = HERALD[name]["environment"]
        assert int(env["HERALD_WEB_PORT"]) == discovery["port"]
        assert env["HERALD_WEB_HOST"] == "0.0.0.0", "a scraper in another container must reach it"
    url = urlparse(SERVICES["grafana"]["environment"]["PROMETHEUS_URL"])
    assert url.hostname == "prometheus" and f"{url.port}:{url.port}" in prometheus["ports"]
