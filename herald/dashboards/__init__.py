"""Grafana dashboards as code, their provisioning and push, and the HTML report.

Public entry points (wired into the CLI): `export_dashboards`, `push_dashboards`,
`render_report`.
"""

from herald.dashboards.provisioning import export_dashboards
from herald.dashboards.push import push_dashboards
from herald.dashboards.report import render_report

__all__ = ["export_dashboards", "push_dashboards", "render_report"]
