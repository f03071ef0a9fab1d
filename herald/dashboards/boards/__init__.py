"""The seven Herald dashboards, in the order Grafana's dashboard list and the report show them."""

from herald.dashboards.boards.broadcast import BROADCAST_DRILLDOWN
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
    RETRIES,
    ESCALATIONS,
    PIPELINE,
    SEARCH,
)
