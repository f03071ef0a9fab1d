"""How a query searches events_raw with its token index (`herald search`, the Search dashboard).

Matching: every word of the text (split on whitespace) must occur in the event's searchable
text (`SEARCH_TEXT`: ids, poll option, error code, broadcast title and payload) as whole
words, ignoring case, in any order; a word of several tokens, such as an id (`b-3f2a…`, a
UUID), must have them adjacent and in order. The text is tokenized in SQL, so Grafana's text
box and the command line share one condition; its first and last tokens are constants after
folding, which is what lets the skip index drop the granules holding neither.

Replayed events may be stored twice until a merge: `LIMIT 1 BY` returns each once.
"""

from __future__ import annotations

from herald.sinks.migrations.search import SEARCH_TEXT

COLUMNS = ("occurred_at, tenant_id, type, broadcast_id, user_id, channel,"
           " JSONExtractString(payload, 'title') AS title, event_id")  # fmt: skip


def matches(text: str) -> str:
    """The condition for the SQL string expression `text` (a quoted literal, or Grafana's
    `${var:sqlstring}`); a text without any token matches everything."""
    tokens = f"tokens(lowerUTF8({text}))"
    return (
        f"(empty({tokens}) OR (hasToken({SEARCH_TEXT}, {tokens}[1])"
        f" AND hasToken({SEARCH_TEXT}, {tokens}[-1])"
        f" AND arrayAll(w -> hasSubstr(tokens({SEARCH_TEXT}), tokens(w)),"
        f" splitByWhitespace(lowerUTF8({text})))))"
    )


def search_query(where: list[str], limit: int) -> str:
    """Matching events newest first: `where` holds `matches(...)` and any filters."""
    return (
        f"SELECT {COLUMNS} FROM events_raw WHERE {' AND '.join(where)}"
        " ORDER BY occurred_at DESC, tenant_id, event_id"
        f" LIMIT 1 BY tenant_id, event_id LIMIT {limit}"
    )
