"""The HTML report: self-contained, every panel rendered, and clean in headless Chromium.

The browser test drives Debian's chromium through chromedriver's W3C WebDriver HTTP API
(stdlib only): load the file, read the browser console log, count the charts, screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver import Client

from herald.dashboards import render_report
from herald.dashboards.boards import DASHBOARDS
from herald.kafka.local_broker import free_port
from herald.processes.child import wait_for

REPO = Path(__file__).resolve().parent.parent
# Set HERALD_UPDATE_SCREENSHOT=1 to refresh the screenshot kept in the docs.
DOCS_SCREENSHOT = REPO / "docs" / "images" / "report.png"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


@pytest.fixture(scope="module")
def report_client(pipeline_clickhouse: Client) -> Client:
    """ClickHouse filled by the real pipeline from a simulated hour (tests/conftest.py)."""
    return pipeline_clickhouse


@pytest.fixture(scope="module")
def report(report_client: Client, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_report(report_client, tmp_path_factory.mktemp("html") / "report.html")


def embedded_data(html: str) -> dict[str, Any]:
    match = re.search(
        r'<script type="application/json" id="herald-data">(.*?)</script>', html, re.S
    )
    assert match
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_report_is_self_contained(report: Path) -> None:
    html = report.read_text()
    assert "Chart.js v4" in html, "the charting library is inlined"
    assert not re.search(r'(src|href)="(https?:)?//', html), "no external resources"
    assert html.count("<script") == 3


def test_report_holds_every_panel_with_data(report: Path) -> None:
    data = embedded_data(report.read_text())
    assert [d["uid"] for d in data["dashboards"]] == [d.uid for d in DASHBOARDS]
    for dashboard, spec in zip(data["dashboards"], DASHBOARDS, strict=True):
        assert [p["title"] for p in dashboard["panels"]] == [p.title for p in spec.panels]
        for panel in dashboard["panels"]:
            assert "error" not in panel, panel.get("error")
            assert panel["rows"], f"{dashboard['title']} / {panel['title']} is empty"
            if panel["render"] in ("timeseries", "barchart"):
                assert panel["labels"] and panel["datasets"], panel["title"]


def delivered(data: dict[str, Any]) -> int:
    overview = data["dashboards"][0]["panels"]
    value: int = next(p for p in overview if p["title"] == "Delivered")["rows"][0][0]
    return value


def test_report_for_one_tenant(report_client: Client, report: Path, tmp_path: Path) -> None:
    one = embedded_data(render_report(report_client, tmp_path / "acme.html", "acme").read_text())
    everyone = embedded_data(report.read_text())
    assert (one["tenant"], everyone["tenant"]) == ("acme", "all")
    assert 0 < delivered(one) < delivered(everyone)


class WebDriver:
    """Just enough of the W3C WebDriver protocol, spoken to a chromedriver child process."""

    def __init__(self, profile: Path) -> None:
        assert CHROMEDRIVER and CHROMIUM
        self.port = free_port()
        self.proc = subprocess.Popen(
            [CHROMEDRIVER, f"--port={self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready(deadline=time.monotonic() + 30)
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }
        answer = self._call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})
        self.session = f"/session/{answer['sessionId']}"

    def _wait_ready(self, deadline: float) -> None:
        wait_for(self._ready, deadline - time.monotonic(), "chromedriver to start", every_s=0.2)

    def _ready(self) -> bool:
        try:
            return bool(self._call("GET", "/status")["ready"])
        except OSError:
            return False

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["value"]

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        return self._call(method, self.session + path, body)

    def close(self) -> None:
        try:
            self._call("DELETE", self.session)
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(
            "chromium and chromedriver are not installed "
            "(apt-get install -y chromium chromium-driver)"
        )
    driver = WebDriver(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.close()


def test_report_in_headless_chromium(report: Path, browser: WebDriver, tmp_path: Path) -> None:
    browser("POST", "/window/rect", {"width": 1400, "height": 2200})
    browser("POST", "/url", {"url": report.as_uri()})
    rendered = browser(
        "POST",
        "/execute/sync",
        {
            "script": "return {rendered: document.body.dataset.rendered,"
            " charts: Object.keys(Chart.instances).length,"
            " canvases: document.querySelectorAll('canvas').length,"
            " panels: document.querySelectorAll('.panel').length,"
            " empty: document.querySelectorAll('.empty, .error').length};",
            "args": [],
        },
    )
    charted = sum(
        p.type in ("timeseries", "barchart", "piechart", "geomap")
        for d in DASHBOARDS
        for p in d.panels
    )
    assert rendered == {
        "rendered": "true",
        "charts": charted,
        "canvases": charted,
        "panels": sum(len(d.panels) for d in DASHBOARDS),
        "empty": 0,
    }
    log = browser("POST", "/se/log", {"type": "browser"})
    problems = [entry for entry in log if entry["level"] in ("SEVERE", "WARNING")]
    assert not problems, problems
    png = base64.b64decode(browser("GET", "/screenshot"))
    assert png.startswith(b"\x89PNG") and len(png) > 50_000
    (tmp_path / "report.png").write_bytes(png)
    if os.environ.get("HERALD_UPDATE_SCREENSHOT"):
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        DOCS_SCREENSHOT.write_bytes(png)
