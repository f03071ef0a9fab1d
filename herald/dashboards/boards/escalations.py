"""5. Escalations: what is open now, transitions over time, the history."""

from herald.dashboards.boards.common import ESCALATION_ANNOTATION, TENANT, TENANT_VAR
from herald.dashboards.model import Dashboard, Panel

_TRANSITIONS = f"FROM escalations FINAL WHERE $__timeFilter(occurred_at) AND {TENANT}"

ESCALATIONS = Dashboard(
    uid="herald-escalations",
    title="Herald / Escalations",
    description="Open escalations, transitions over time, and their history.",
    variables=(TENANT_VAR,),
    annotations=(ESCALATION_ANNOTATION,),
    panels=(
        Panel(
            "Open now, by level",
            "stat",
            "SELECT countIf(level = 1) AS level_1, countIf(level = 2) AS level_2,"
            f" countIf(level >= 3) AS level_3 FROM open_escalations WHERE {TENANT}",
            height=4,
        ),
        Panel(
            "Transitions in the time range",
            "stat",
            "SELECT countIf(state = 'open') AS opened, countIf(state = 'escalate') AS escalated,"
            f" countIf(state = 'resolve') AS resolved {_TRANSITIONS}",
            height=4,
        ),
        Panel(
            "Open escalations",
            "table",
            "SELECT opened_at, rule, subject, level, value, threshold, message, escalation_id"
            f" FROM open_escalations WHERE {TENANT} ORDER BY level DESC, opened_at",
            width=24,
        ),
        Panel(
            "Transitions over time",
            "timeseries",
            "SELECT $__timeInterval(occurred_at) AS time, state, count() AS transitions"
            f" {_TRANSITIONS} GROUP BY time, state ORDER BY time, state",
            options={"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        ),
        Panel(
            "Opened by rule",
            "barchart",
            f"SELECT rule, count() AS opened {_TRANSITIONS} AND state = 'open'"
            " GROUP BY rule ORDER BY opened DESC",
            options={"xField": "rule"},
        ),
        Panel(
            "History",
            "table",
            "SELECT occurred_at, state, level, rule, subject, value, threshold, message"
            f" {_TRANSITIONS} ORDER BY occurred_at DESC LIMIT 200",
            width=24,
            height=10,
        ),
    ),
)
