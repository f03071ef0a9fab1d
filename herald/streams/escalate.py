"""The escalation agent (SPEC §5): a Faust agent over `herald.signals` with a Faust table.

Its input is what the shards already counted — per-second deltas and event-time clocks, a
few messages a second — not raw events, so Faust's own machinery fits: `@app.agent`,
`app.Table` on RocksDB with its changelog, recovery and standbys. The table is partitioned
like `herald.signals` (a subject always hashes to the same partition), and each partition's
`Board` runs the ticks once every shard's clock has passed them.

At least once, and never less: a message's transitions are sent to `herald.transitions` and
acknowledged before its table writes (its log entry, or a checkpoint: see
tables/escalation_board), and Faust commits the input only after those. A crash repeats a
message: its deltas are skipped per subject (the shard offsets each subject keeps) and its
transitions come again, identical; streams/publish.py passes each on once.

The table's values are orjson bytes, encoded once by `Staged`: with Faust's json codec each
value was serialised twice, for the changelog and for the store. Values Faust wrote as JSON
read the same.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterator, MutableMapping
from typing import Any

import faust
import orjson

from herald.config import Settings
from herald.model import topics
from herald.tables.escalation_board import Board, Cache
from herald.tables.escalations import rules
from herald.telemetry import failpoints

TABLE = "escalations"
# A partition's subjects are written at most this often; messages in between are logged.
CHECKPOINT_S = 1.0
_GONE = object()


class Staged(MutableMapping[str, Any]):
    """JSON values over a Faust table of bytes; writes held back until `flush`: they must
    follow the sends."""

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table, self.writes = table, dict[str, Any]()

    def __getitem__(self, key: str) -> Any:
        if key not in self.writes:
            return orjson.loads(self.table[key])
        value = self.writes[key]
        if value is _GONE:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes[key] = value

    def __delitem__(self, key: str) -> None:
        self.writes[key] = _GONE

    def __iter__(self) -> Iterator[str]:
        raise TypeError("a staged table is read by key")

    def __len__(self) -> int:
        raise TypeError("a staged table is read by key")

    def flush(self) -> None:
        for key, value in self.writes.items():
            if value is _GONE:
                self.table.pop(key, None)
            else:
                self.table[key] = orjson.dumps(value)


def changelog_topic(app_id: str) -> str:
    """Where Faust keeps the table's changelog (its naming: app id, table, "changelog")."""
    return f"{app_id}-{TABLE}-changelog"


def register(app: faust.App, settings: Settings) -> None:
    """Add the agent and its table to `app` (roles that run shards)."""
    enabled = rules(settings.escalations)
    # Faust picks a table's codecs from its types (not a schema): str keys as JSON, as
    # before; bytes values raw.
    table = app.Table(TABLE, partitions=settings.shards, key_type=str, value_type=bytes,
                      options={"driver": "rocksdict"})  # fmt: skip
    source = app.topic(topics.SIGNALS, key_serializer="raw", value_serializer="raw")
    out = app.topic(topics.TRANSITIONS, key_serializer="raw", value_serializer="raw")
    caches: dict[int, Cache] = defaultdict(Cache)  # per partition, see tables/escalation_board
    checkpointed: dict[int, float] = defaultdict(float)  # per partition, monotonic seconds

    @app.agent(source, name="herald.escalate")
    async def escalate(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            partition = event.message.partition
            staged = Staged(table)
            board = Board(staged, partition, settings.shards, enabled, caches[partition])
            checkpoint = time.monotonic() - checkpointed[partition] >= CHECKPOINT_S
            transitions = board.apply(orjson.loads(event.value), checkpoint)
            if checkpoint:
                checkpointed[partition] = time.monotonic()
            sent = [await out.send(key=t["escalation_id"].encode(), value=orjson.dumps(t),
                                   partition=partition) for t in transitions]  # fmt: skip
            await asyncio.gather(*sent)
            if transitions:
                failpoints.hit("transitions-sent")  # sent, the table not yet written
            staged.flush()
