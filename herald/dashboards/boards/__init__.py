"""The eight Herald dashboards on ClickHouse, in the order Grafana's dashboard list and the
report show them (the Prometheus one, Runtime, is in boards/runtime.py)."""

from herald.dashboards.boards.broadcast import BROADCAST_DRILLDOWN
from herald.dashboards.boards.engagement import ENGAGEMENT
from herald.dashboards.boards.escalations import ESCALATIONS
from herald.dashboards.boards.overview import OVERVIEW
from herald.dashboards.boards.pipeline import PIPELINE
from herald.dashboards.boards.regions import REGIONS
from herald.dashboards.boards.retries import RETRIES
from herald.dashboards.boards.search import SEARCH
from herald.dashboards.model import Dashboard

DASHBOARDS: tuple[Dashboard, ...] = (
    OVERVIEW,
    BROADCAST_DRILLDOWN,
    REGIONS,
    ENGAGEMENT,
    RETRIES,
    ESCALATIONS,
    PIPELINE,
    SEARCH,
)
