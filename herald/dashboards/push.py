"""`herald dashboards push`: create or update the data source and dashboards over Grafana's API."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from herald.dashboards.boards import DASHBOARDS
from herald.dashboards.model import DATASOURCE_UID, to_json
from herald.dashboards.provisioning import FOLDER_TITLE, FOLDER_UID, datasource_model
from herald.errors import HeraldError, ServiceUnavailable
from herald.model.schema import DATABASE

T = TypeVar("T")


def push_dashboards(
    url: str,
    token: str | None,
    *,
    clickhouse_dsn: str,
    clickhouse_host: str | None = None,
    timeout_s: float = 10.0,
) -> str:
    """Create or update the data source, the Herald folder and the dashboards.

    `url` may carry basic auth (http://admin:admin@localhost:3000) when `token` is None.
    The data source points at the ClickHouse server of `clickhouse_dsn` (http://user:pass@
    host:8123[/db]); `clickhouse_host` overrides the host as Grafana must reach it (e.g.
    `clickhouse` inside docker-compose). Returns a one-line summary.
    """
    model = _datasource_from_dsn(clickhouse_dsn, clickhouse_host)
    api = GrafanaApi.from_url(url, credential=token, timeout=timeout_s)
    _call(url, lambda: _upsert_datasource(api, model))
    _call(url, lambda: _ensure_folder(api))
    for dashboard in DASHBOARDS:
        payload = {
            "dashboard": to_json(dashboard),
            "folderUid": FOLDER_UID,
            "overwrite": True,
            "message": "herald dashboards push",
        }
        _call(url, partial(api.dashboard.update_dashboard, payload))
    return (
        f"pushed data source {DATASOURCE_UID} and {len(DASHBOARDS)} dashboards to "
        f"{_without_password(url)} (folder {FOLDER_TITLE})"
    )


def _datasource_from_dsn(dsn: str, host_override: str | None) -> dict[str, Any]:
    parsed = urlparse(dsn)
    if parsed.scheme not in ("http", "https"):
        raise HeraldError(
            "Grafana needs a ClickHouse server: set HERALD_CLICKHOUSE_DSN to "
            f"http://user:pass@host:8123 (embedded chDB cannot be shared), not {dsn!r}"
        )
    return datasource_model(
        host=host_override or parsed.hostname or "localhost",
        port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
        user=unquote(parsed.username or "default"),
        password=unquote(parsed.password or ""),
        database=unquote(parsed.path.strip("/")) or DATABASE,
        secure=parsed.scheme == "https",
    )


def _upsert_datasource(api: GrafanaApi, model: dict[str, Any]) -> None:
    try:
        api.datasource.get_datasource_by_uid(DATASOURCE_UID)
    except GrafanaClientError as ex:
        if ex.status_code != 404:
            raise
        api.datasource.create_datasource(model)
    else:
        api.datasource.update_datasource_by_uid(DATASOURCE_UID, model)


def _ensure_folder(api: GrafanaApi) -> None:
    try:
        api.folder.get_folder(FOLDER_UID)
    except GrafanaClientError as ex:
        if ex.status_code != 404:
            raise
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)


def _call(url: str, request: Callable[[], T]) -> T:
    """One API call; transport and HTTP failures become one-line Herald errors."""
    where = _without_password(url)
    try:
        return request()
    except niquests.exceptions.RequestException as ex:
        raise ServiceUnavailable(f"cannot reach Grafana at {where}: {type(ex).__name__}") from ex
    except GrafanaException as ex:
        raise HeraldError(f"Grafana at {where} answered {ex.status_code}: {ex.message}") from ex


def _without_password(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    port = f":{parsed.port}" if parsed.port else ""
    return parsed._replace(netloc=f"{parsed.username}:***@{parsed.hostname}{port}").geturl()
