"""7. Search: past notifications and their events matching the text box, as `herald search`.

The panels share `herald search`'s condition (herald.sinks.search), so the token index on
events_raw answers them too; an empty box matches every event in the time range.
"""

from herald.dashboards.boards.common import ESCALATION_ANNOTATION, TENANT, TENANT_VAR
from herald.dashboards.model import Dashboard, Panel, TextBox
from herald.sinks.search import matches, search_query

SEARCH_VAR = TextBox("search", "Search (words or an id)")
_MATCHING = ["$__timeFilter(occurred_at)", TENANT, matches("${search:sqlstring}")]
_FROM = f"FROM events_raw WHERE {' AND '.join(_MATCHING)}"
# Replayed events may be stored twice until a merge: count distinct events.
_EVENTS = "uniqExact(tenant_id, event_id)"

SEARCH = Dashboard(
    uid="herald-search",
    title="Herald / Search",
    description="Past notifications and their events: titles, payload and ids (case ignored).",
    variables=(TENANT_VAR, SEARCH_VAR),
    annotations=(ESCALATION_ANNOTATION,),
    panels=(
        Panel(
            "Matching",
            "stat",
            f"SELECT {_EVENTS} AS events, uniqExact(tenant_id, broadcast_id) AS broadcasts"
            f" {_FROM}",
            width=6,
            height=6,
        ),
        Panel(
            "Matching events over time",
            "timeseries",
            f"SELECT $__timeInterval(occurred_at) AS time, type, {_EVENTS} AS events"
            f" {_FROM} GROUP BY time, type ORDER BY time, type",
            width=18,
            height=6,
        ),
        Panel(
            "Matching events, newest first",
            "table",
            search_query(_MATCHING, 200),
            width=24,
            height=14,
            description="Every word must occur whole, in any order; an id as written.",
        ),
    ),
)
