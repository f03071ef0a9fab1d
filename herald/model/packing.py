"""The format of `herald.events` messages: many events to one Kafka message.

    line 1:  header  {"src": "deliveries/3", "wm": 1795428000000}   or   {"hb": {...}}
    line 2:  the events as one JSON array of `Event` arrays (absent in a heartbeat)

One array, not a line per event: the encoder then fills one buffer per message instead of one
per event. ClickHouse's JSONCompactEachRow reads arrays separated by commas, so the sink hands
the outer array's inside to ClickHouse as it is (parsed in C++) without decoding it in Python.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from herald.model.event import Event

_ENCODE = msgspec.json.Encoder().encode
_DECODE = msgspec.json.Decoder(list[Event]).decode


def pack(header: dict[str, Any], events: list[Event] | None = None) -> bytes:
    if not events:
        return orjson.dumps(header)
    return b"\n".join((orjson.dumps(header), _ENCODE(events)))


def unpack(value: bytes) -> tuple[dict[str, Any], list[Event]]:
    header, _, events = value.partition(b"\n")
    return orjson.loads(header), _DECODE(events) if events else []


def event_rows(value: bytes) -> bytes:
    """The events of a message as comma-separated JSON arrays (JSONCompactEachRow), b"" for
    none."""
    newline = value.find(b"\n")
    return b"" if newline < 0 else value[newline + 2 : -1]  # inside the outer array's brackets
