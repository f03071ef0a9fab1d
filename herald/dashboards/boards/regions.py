"""3. Regions: delivery and failure rates per region x channel, a map, latency by region."""

from herald.dashboards.boards.common import (
    BUCKET,
    CHANNEL,
    CHANNEL_VAR,
    ESCALATION_ANNOTATION,
    LATENCY_LEVELS,
    PER_S,
    REGION,
    REGION_VAR,
    TENANT,
    TENANT_VAR,
    WINDOWS,
    hist_percentiles,
)
from herald.dashboards.model import Dashboard, Panel

_STATS = f"FROM region_stats_1m FINAL WHERE {WINDOWS} AND {TENANT} AND {REGION} AND {CHANNEL}"
_FAILURE_RATE = "sum(failed) / nullIf(sum(delivered) + sum(failed), 0)"

_GEOMAP = {
    "view": {"id": "zero", "lat": 20, "lon": 0, "zoom": 1.5},
    "controls": {"showZoom": True, "mouseWheelZoom": True},
    "basemap": {"type": "default", "name": "Basemap"},
    "layers": [
        {
            "type": "markers",
            "name": "Regions",
            # Regions named by ISO country code are placed with Grafana's built-in gazetteer.
            "location": {
                "mode": "lookup",
                "lookup": "region",
                "gazetteer": "public/gazetteer/countries.json",
            },
            "config": {
                "showLegend": True,
                "style": {
                    "size": {"field": "delivered", "min": 4, "max": 30, "fixed": 5},
                    "color": {"field": "failure_rate", "fixed": "dark-green"},
                    "opacity": 0.6,
                },
            },
            "tooltip": True,
        }
    ],
    "tooltip": {"mode": "details"},
}

REGIONS = Dashboard(
    uid="herald-regions",
    title="Herald / Regions",
    description="Per region x channel delivery and failure rates, a map, latency by region.",
    variables=(TENANT_VAR, REGION_VAR, CHANNEL_VAR),
    annotations=(ESCALATION_ANNOTATION,),
    panels=(
        Panel(
            "Delivered by country",
            "geomap",
            "SELECT region, delivered, failed / nullIf(delivered + failed, 0) AS failure_rate"
            " FROM (SELECT region, sum(delivered) AS delivered, sum(failed) AS failed"
            f" {_STATS} AND match(region, '^[A-Z]{{2}}$') GROUP BY region) ORDER BY region",
            height=10,
            description="Regions named by a two-letter country code.",
            options=_GEOMAP,
        ),
        Panel(
            "Region x channel",
            "table",
            "SELECT region, channel, delivered, failed, pending, expired,"
            " round(delivered / nullIf(delivered + failed + expired, 0), 4) AS delivery_rate,"
            " round(failed / nullIf(delivered + failed, 0), 4) AS failure_rate,"
            " round(read / nullIf(delivered, 0), 4) AS read_rate,"
            " if(n = 0, NULL, round(pow(2, (q[1] + 0.5) / 8))) AS latency_p95_ms"
            " FROM (SELECT region, channel, sum(delivered) AS delivered, sum(failed) AS failed,"
            " sum(pending) AS pending, sum(expired) AS expired, sum(read) AS read,"
            " quantilesExactWeightedArray(0.95)(mapKeys(delivery_latency_hist),"
            " mapValues(delivery_latency_hist)) AS q,"
            " sum(arraySum(mapValues(delivery_latency_hist))) AS n"
            f" {_STATS} GROUP BY region, channel) ORDER BY region, channel",
            height=10,
        ),
        Panel(
            "Failure rate by channel",
            "timeseries",
            f"SELECT {BUCKET}, channel, {_FAILURE_RATE} AS failure_rate"
            f" {_STATS} GROUP BY time, channel ORDER BY time, channel",
            unit="percentunit",
        ),
        Panel(
            "Delivered/s by region",
            "timeseries",
            f"SELECT {BUCKET}, region, sum(delivered) {PER_S} AS delivered"
            f" {_STATS} GROUP BY time, region ORDER BY time, region",
            unit="cps",
        ),
        Panel(
            "Delivery latency by region",
            "barchart",
            hist_percentiles(
                "delivery_latency_hist",
                {"p50_ms": 0.5, "p95_ms": LATENCY_LEVELS["p95_ms"]},
                _STATS,
                keys=("region",),
            ),
            unit="ms",
            options={"xField": "region"},
        ),
        Panel(
            "Pending and expired by region",
            "barchart",
            "SELECT region, sum(pending) AS pending, sum(expired) AS expired"
            f" {_STATS} GROUP BY region ORDER BY region",
            options={"xField": "region"},
        ),
    ),
)
