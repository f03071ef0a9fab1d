"""The escalation agent (SPEC §5): a Faust agent over `herald.signals` with a Faust table.

Its input is what the shards already counted — per-second deltas and event-time clocks, a
few messages a second — not raw events, so Faust's own machinery fits: `@app.agent`,
`app.Table` on RocksDB with its changelog, recovery and standbys. The table is partitioned
like `herald.signals` (a subject always hashes to the same partition), and each partition's
`Board` runs the ticks once every shard's clock has passed them. Each transition goes to
`herald.escalations` and, as an `escalations` row, to `herald.aggregates` for the sink.
"""

from __future__ import annotations

from typing import Any

import faust
import orjson

from herald.config import Settings
from herald.model import topics
from herald.model.event import rfc3339
from herald.streams.aggregate import pack_rows
from herald.tables.escalation_board import Board
from herald.tables.escalations import rules

TABLE = "escalations"


def register(app: faust.App, settings: Settings) -> None:
    """Add the agent and its table to `app` (roles that run shards)."""
    enabled = rules(settings.escalations)
    json = faust.Schema(key_serializer="json", value_serializer="json")
    table = app.Table(TABLE, partitions=settings.shards, schema=json,
                      options={"driver": "rocksdict"})  # fmt: skip
    source = app.topic(topics.SIGNALS, key_serializer="raw", value_serializer="raw")
    published = app.topic(topics.ESCALATIONS, key_serializer="raw", value_serializer="raw")
    rows = app.topic(topics.AGGREGATES, key_serializer="raw", value_serializer="raw")

    @app.agent(source, name="herald.escalate")
    async def escalate(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            board = Board(table, event.message.partition, settings.shards, enabled)
            transitions = board.apply(orjson.loads(event.value))
            for transition in transitions:
                await published.send(key=transition["escalation_id"].encode(),
                                     value=orjson.dumps(to_message(transition)))  # fmt: skip
            for message in pack_rows({"escalations": [to_row(t) for t in transitions]}):
                await rows.send(key=str(event.message.partition).encode(), value=message)


def to_message(transition: dict[str, Any]) -> dict[str, Any]:
    """The `herald.escalations` document: times in RFC 3339."""
    times = {k: rfc3339(transition[k]) for k in ("opened_at", "occurred_at")}
    return {**transition, **times}


def to_row(transition: dict[str, Any]) -> dict[str, Any]:
    """An `escalations` row: one per transition, collapsing with itself if sent again."""
    return {**transition, "version": 1}
