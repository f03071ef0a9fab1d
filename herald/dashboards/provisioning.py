"""Grafana provisioning: the data source, the dashboard provider and the dashboards' JSON.

`export_dashboards(out_dir)` writes what docker-compose mounts into Grafana, so it starts with
everything in place. The data source takes its connection from the Grafana container's
environment (CLICKHOUSE_HOST, CLICKHOUSE_USER, CLICKHOUSE_PASSWORD, CLICKHOUSE_DATABASE),
which Grafana expands in provisioning files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from herald.dashboards.boards import DASHBOARDS
from herald.dashboards.boards.runtime import RUNTIME
from herald.dashboards.model import (
    DATASOURCE_TYPE,
    DATASOURCE_UID,
    PROMETHEUS_UID,
    Dashboard,
    to_json,
)

DATASOURCE_NAME = "Herald ClickHouse"
FOLDER_TITLE = "Herald"
FOLDER_UID = "herald"
# Where docker-compose mounts dashboards/json inside the Grafana container.
GRAFANA_DASHBOARDS_PATH = "/var/lib/grafana/dashboards/herald"

DATASOURCE_YAML = f"""\
# Written by `herald dashboards export`. Grafana fills in the CLICKHOUSE_* values from its
# environment (docker-compose.yml sets them).
apiVersion: 1
datasources:
  - name: {DATASOURCE_NAME}
    uid: {DATASOURCE_UID}
    type: {DATASOURCE_TYPE}
    isDefault: true
    jsonData:
      host: $CLICKHOUSE_HOST
      port: 8123
      protocol: http
      secure: false
      username: $CLICKHOUSE_USER
      defaultDatabase: $CLICKHOUSE_DATABASE
    secureJsonData:
      password: $CLICKHOUSE_PASSWORD
"""

PROMETHEUS_YAML = f"""\
# Written by `herald dashboards export`: the Prometheus that scrapes Herald's /metrics
# (docker-compose.yml sets PROMETHEUS_URL), for the Herald / Runtime dashboard.
apiVersion: 1
datasources:
  - name: Herald Prometheus
    uid: {PROMETHEUS_UID}
    type: prometheus
    access: proxy
    url: $PROMETHEUS_URL
    jsonData:
      timeInterval: 5s
"""

PROVIDER_YAML = f"""\
# Written by `herald dashboards export`: load Herald's dashboards from files, zero clicks.
apiVersion: 1
providers:
  - name: herald
    folder: {FOLDER_TITLE}
    folderUid: {FOLDER_UID}
    type: file
    disableDeletion: false
    allowUiUpdates: true
    updateIntervalSeconds: 30
    options:
      path: {GRAFANA_DASHBOARDS_PATH}
"""


def datasource_model(
    host: str, port: int, user: str, password: str, database: str, secure: bool = False
) -> dict[str, Any]:
    """The data source as the Grafana HTTP API takes it (same settings as DATASOURCE_YAML)."""
    return {
        "name": DATASOURCE_NAME,
        "uid": DATASOURCE_UID,
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "isDefault": True,
        "jsonData": {
            "host": host,
            "port": port,
            "protocol": "http",
            "secure": secure,
            "username": user,
            "defaultDatabase": database,
        },
        "secureJsonData": {"password": password},
    }


def dashboard_json(dashboard: Dashboard) -> str:
    return json.dumps(to_json(dashboard), indent=2, ensure_ascii=False) + "\n"


def export_dashboards(out_dir: Path) -> list[Path]:
    """Write provisioning/{datasources,dashboards}/*.yaml and json/<uid>.json: the ClickHouse
    dashboards and Herald / Runtime (Prometheus)."""
    files = {
        out_dir / "provisioning" / "datasources" / "herald.yaml": DATASOURCE_YAML,
        out_dir / "provisioning" / "datasources" / "prometheus.yaml": PROMETHEUS_YAML,
        out_dir / "provisioning" / "dashboards" / "herald.yaml": PROVIDER_YAML,
    }
    for dashboard in (*DASHBOARDS, RUNTIME):
        files[out_dir / "json" / dashboard.file_name] = dashboard_json(dashboard)
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)
