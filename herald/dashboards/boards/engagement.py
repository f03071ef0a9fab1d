"""8. Engagement: reach, read and response rates by the broadcasts' dimensions; poll results."""

from herald.dashboards.boards.common import ESCALATION_ANNOTATION, TENANT, TENANT_VAR, var_filter
from herald.dashboards.model import Dashboard, Panel, Variable

DIMENSION = var_filter("dimension", "dimension")
DIMENSION_VAR = Variable(
    "dimension",
    "Dimension",
    f"SELECT dimension FROM dimension_summary WHERE {TENANT} GROUP BY dimension"
    " ORDER BY dimension",
)
_SOURCE = f"FROM dimension_summary WHERE {TENANT} AND {DIMENSION}"
# Rates over the selected tenants recomputed from the sums (an average of rates would weigh
# a small tenant like a large one).
_RATES = (
    "round(sum(recipients_delivered) / nullIf(sum(targeted), 0), 4) AS delivery_rate,"
    " round(sum(recipients_read) / nullIf(sum(recipients_delivered), 0), 4) AS read_rate,"
    " round(sum(recipients_responded) / nullIf(sum(recipients_delivered), 0), 4)"
    " AS response_rate"
)

ENGAGEMENT = Dashboard(
    uid="herald-engagement",
    title="Herald / Engagement",
    description="Delivery, read and response rates by targeting, segment, format, priority,"
    " language and channel (exact distinct recipients); poll results.",
    variables=(TENANT_VAR, DIMENSION_VAR),
    annotations=(ESCALATION_ANNOTATION,),
    panels=(
        Panel(
            "Rates by dimension value",
            "barchart",
            f"SELECT concat(dimension, ': ', value) AS label, {_RATES} {_SOURCE}"
            " GROUP BY dimension, value ORDER BY dimension, value",
            width=24,
            unit="percentunit",
            options={"xField": "label"},
            description="delivery = users reached / users targeted; read and response ="
            " users who read / responded over users reached (view dimension_summary).",
        ),
        Panel(
            "Reach by dimension value",
            "table",
            "SELECT dimension, value, sum(broadcasts) AS broadcasts,"
            " sum(targeted) AS users_targeted, sum(recipients_delivered) AS reached,"
            " sum(recipients_read) AS readers,"
            f" sum(recipients_responded) AS responders, {_RATES} {_SOURCE}"
            " GROUP BY dimension, value ORDER BY dimension, reached DESC",
            width=24,
            height=10,
        ),
        Panel(
            "Poll results",
            "table",
            "SELECT broadcast_id, action_id, responders, round(share, 4) AS share, clicks"
            f" FROM poll_results WHERE {TENANT} AND responders > 0"
            " ORDER BY broadcast_id, responders DESC LIMIT 200",
            width=24,
            height=10,
            description="Distinct responders per option of each poll and their share"
            " (view poll_results).",
        ),
    ),
)
