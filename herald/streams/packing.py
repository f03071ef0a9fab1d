"""The format of `herald.events` messages: many events to one Kafka message.

    line 1:    header  {"src": "deliveries/3", "wm": 1795428000000}   or   {"hb": {...}}
    lines 2..: one normalised event per line (JSON)

Events are lines, not a JSON array, so the sink hands them to ClickHouse as they are
(`FORMAT JSONEachRow`, parsed in C++) without decoding them in Python.
"""

from __future__ import annotations

from typing import Any

import orjson


def pack(header: dict[str, Any], events: list[dict[str, Any]] | None = None) -> bytes:
    return b"\n".join([orjson.dumps(header), *map(orjson.dumps, events or ())])


def unpack(value: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header, *lines = value.split(b"\n")
    return orjson.loads(header), [orjson.loads(line) for line in lines]


def event_lines(value: bytes) -> bytes:
    """The events of a message as JSONEachRow, b"" for a heartbeat."""
    newline = value.find(b"\n")
    return b"" if newline < 0 else value[newline + 1 :]
