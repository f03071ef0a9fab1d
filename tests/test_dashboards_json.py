"""The dashboard JSON and provisioning files: the structure Grafana accepts, kept in sync."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from herald.dashboards import export_dashboards
from herald.dashboards.boards import DASHBOARDS
from herald.dashboards.boards.runtime import RUNTIME
from herald.dashboards.model import (
    DATASOURCE_TYPE,
    DATASOURCE_UID,
    GRID_COLUMNS,
    PROMETHEUS_REF,
    SCHEMA_VERSION,
)

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "dashboards"
PANEL_TYPES = {"timeseries", "stat", "table", "barchart", "piechart", "geomap"}


def load(uid: str) -> dict[str, Any]:
    return json.loads((COMMITTED / "json" / f"{uid}.json").read_text())


BOARDS = [pytest.param(load(d.uid), id=d.uid) for d in DASHBOARDS]
ALL_BOARDS = [*BOARDS, pytest.param(load(RUNTIME.uid), id=RUNTIME.uid)]


def test_eight_dashboards_with_unique_uids_and_titles() -> None:
    assert len(DASHBOARDS) == 8
    assert len({d.uid for d in DASHBOARDS}) == len({d.title for d in DASHBOARDS}) == 8


def test_committed_files_match_the_code(tmp_path: Path) -> None:
    """dashboards/ is generated: regenerate with `herald dashboards export` after a change."""
    written = export_dashboards(tmp_path)
    committed = sorted(p.relative_to(COMMITTED) for p in COMMITTED.rglob("*") if p.is_file())
    assert committed == sorted(p.relative_to(tmp_path) for p in written)
    for path in written:
        assert (COMMITTED / path.relative_to(tmp_path)).read_text() == path.read_text(), path


@pytest.mark.parametrize("board", ALL_BOARDS)
def test_dashboard_top_level(board: dict[str, Any]) -> None:
    assert board["schemaVersion"] == SCHEMA_VERSION
    assert board["id"] is None, "a provisioned dashboard carries no database id"
    assert board["uid"] and len(board["uid"]) <= 40
    assert board["title"] and isinstance(board["panels"], list) and board["panels"]
    assert {"from", "to"} <= board["time"].keys()


@pytest.mark.parametrize("board", ALL_BOARDS)
def test_panel_ids_unique_and_grid_without_overlap(board: dict[str, Any]) -> None:
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["y"] >= 0
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
        covered = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not covered & cells, f"{panel['title']} overlaps another panel"
        cells |= covered


@pytest.mark.parametrize("board", BOARDS)
def test_every_query_uses_the_provisioned_datasource(board: dict[str, Any]) -> None:
    ref = {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
    for panel in board["panels"]:
        assert panel["type"] in PANEL_TYPES
        assert panel["datasource"] == ref
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == ref
            assert target["editorType"] == "sql" and target["rawSql"].startswith("SELECT")
            assert target["format"] == (0 if panel["type"] == "timeseries" else 1)
    for variable in board["templating"]["list"]:
        assert variable["type"] == "textbox" or variable["datasource"] == ref
    custom = [a for a in board["annotations"]["list"] if not a.get("builtIn")]
    assert custom and all(a["datasource"] == ref for a in custom)


@pytest.mark.parametrize("board", BOARDS)
def test_template_variables(board: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in board["templating"]["list"]}
    for variable in variables.values():
        if variable["type"] == "textbox":
            assert variable["current"]["value"] == variable["query"]
            continue
        assert variable["type"] == "query"
        assert variable["multi"] is True and variable["includeAll"] is True
        assert variable["current"]["value"] == ["$__all"]
        assert variable["query"]["rawSql"] == variable["definition"]
    if board["uid"] == "herald-pipeline":
        # Pipeline stats are per worker and sink, not per tenant.
        assert set(variables) == {"component"}
    else:
        assert next(iter(variables)) == "tenant"
    used = {
        name
        for name in variables
        if any(f"${{{name}:" in t["rawSql"] for p in board["panels"] for t in p["targets"])
    }
    assert used == set(variables), "every variable filters at least one panel"


def test_drilldown_and_region_variables_where_they_fit() -> None:
    boards = ("herald-broadcast", "herald-regions", "herald-retries", "herald-search")
    names = {d["uid"]: [v["name"] for v in d["templating"]["list"]] for d in map(load, boards)}
    assert names == {
        "herald-broadcast": ["tenant", "broadcast"],
        "herald-regions": ["tenant", "region", "channel"],
        "herald-retries": ["tenant", "channel"],
        "herald-search": ["tenant", "search"],
    }
    (search,) = [v for v in load("herald-search")["templating"]["list"] if v["type"] == "textbox"]
    assert search["name"] == "search"


def test_datasource_provisioning() -> None:
    config = yaml.safe_load((COMMITTED / "provisioning/datasources/herald.yaml").read_text())
    (source,) = config["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == DATASOURCE_TYPE
    # The plugin reads defaultDatabase (not database) and the password from secureJsonData.
    assert {"host", "port", "protocol", "username", "defaultDatabase"} <= source["jsonData"].keys()
    assert source["jsonData"]["protocol"] == "http" and source["jsonData"]["port"] == 8123
    assert source["secureJsonData"]["password"] == "$CLICKHOUSE_PASSWORD"
    assert source["jsonData"]["host"] == "$CLICKHOUSE_HOST"


def test_dashboard_provider_points_at_the_mounted_json() -> None:
    config = yaml.safe_load((COMMITTED / "provisioning/dashboards/herald.yaml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./dashboards/json:{provider['options']['path']}:ro" in mounts


def test_runtime_board_queries_prometheus_only() -> None:
    board = load(RUNTIME.uid)
    assert board["title"] == "Herald / Runtime" and not board["templating"]["list"]
    for panel in board["panels"]:
        assert panel["type"] in PANEL_TYPES and panel["datasource"] == PROMETHEUS_REF
        (target,) = panel["targets"]
        assert target["datasource"] == PROMETHEUS_REF and target["expr"], panel["title"]
        assert "rawSql" not in target
    config = yaml.safe_load((COMMITTED / "provisioning/datasources/prometheus.yaml").read_text())
    (source,) = config["datasources"]
    assert (source["uid"], source["type"]) == (PROMETHEUS_REF["uid"], PROMETHEUS_REF["type"])
