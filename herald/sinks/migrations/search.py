"""Search of past notifications (`herald search`, the Search dashboard): a token index on
events_raw.

What is searchable is one lower-cased text per event: its ids (event, broadcast, user), the
poll option, the error code and the broadcast payload (title and other lifecycle fields).
A query uses the index only when it names this very expression (`SEARCH_TEXT`) in
`hasToken(SEARCH_TEXT, 'token')`; released migrations never change, so neither does it.

Why tokenbf_v1 and not the full-text index (`TYPE text`): chDB 4.4 (engine 26.9) has both,
but the ClickHouse server pinned in docker-compose.yml (25.8) has `text` only as an
experimental feature, with another tokenizer syntax (`'default'`, renamed `splitByNonAlpha`
in 25.10) and an on-disk format that changed again in 25.12; one migration must work on both.
tokenbf_v1 splits on the same non-alphanumeric ASCII characters as `hasToken` in both.

Size: a granule of 8192 events holds about 50 k distinct tokens (a UUID event id alone is
five); 64 KiB with 3 hashes keeps a granule's false-positive rate near 2 %.
"""

from __future__ import annotations

from herald.sinks.migrations.step import Migration

SEARCH_INDEX = "search_tokens"
SEARCH_TEXT = (
    "lowerUTF8(concat(event_id, ' ', broadcast_id, ' ', user_id, ' ', action_id, ' ',"
    " error_code, ' ', payload))"
)

STEPS: tuple[Migration, ...] = (
    Migration(
        20,
        "events_raw_search_index",
        f"""
ALTER TABLE events_raw
    ADD INDEX IF NOT EXISTS {SEARCH_INDEX} {SEARCH_TEXT} TYPE tokenbf_v1(65536, 3, 0) GRANULARITY 1
""",
    ),
    # Parts written before migration 20 have no index: a search still finds their rows (it
    # reads them whole) until this mutation or a merge builds it. The mutation runs in the
    # background, so migrating a large table does not block the sink.
    Migration(
        21,
        "events_raw_search_index_materialize",
        f"ALTER TABLE events_raw MATERIALIZE INDEX {SEARCH_INDEX}",
    ),
)
