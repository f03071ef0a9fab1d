"""The format of `herald.events` messages: many events to one Kafka message.

    line 1:  header  {"src": "deliveries/3", "wm": 1795428000000}   or   {"hb": {...}}
    line 2:  the normalised events as one JSON array (absent in a heartbeat)

One array, not a line per event: orjson then allocates one buffer per message instead of one
per event (per call it reserves a buffer, which costs more than encoding a small event here).
ClickHouse's JSONEachRow reads objects separated by commas, so the sink hands the array's
inside to ClickHouse as it is (parsed in C++) without decoding it in Python.
"""

from __future__ import annotations

from typing import Any

import orjson


def pack(header: dict[str, Any], events: list[dict[str, Any]] | None = None) -> bytes:
    if not events:
        return orjson.dumps(header)
    return b"\n".join((orjson.dumps(header), orjson.dumps(events)))


def unpack(value: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header, _, events = value.partition(b"\n")
    return orjson.loads(header), orjson.loads(events) if events else []


def event_rows(value: bytes) -> bytes:
    """The events of a message as comma-separated JSON objects (JSONEachRow), b"" for none."""
    newline = value.find(b"\n")
    return b"" if newline < 0 else value[newline + 2 : -1]  # inside the array's brackets
