"""The normalised event, as ingest hands it to the shards on `herald.events`.

A msgspec Struct encoded as a JSON array (`array_like`): per event it encodes and decodes
faster than a dict and takes ~40 % fewer bytes, and the sink hands the arrays to ClickHouse as
`JSONCompactEachRow` rows of `events_raw`, whose columns are these fields in this order (with
`ts` an EPHEMERAL column that fills `occurred_at`). Positional JSON parses in ClickHouse at
about a third of the CPU of `JSONEachRow` (0.9 against 2.6 CPU-us per event, measured here).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec


class Event(msgspec.Struct, array_like=True, gc=False):
    """One valid input event. `payload` holds what only `broadcasts` events carry."""

    topic: str
    type: str
    event_id: str
    tenant_id: str
    broadcast_id: str
    ts: int  # occurred_at, epoch milliseconds
    user_id: str | None = None
    channel: str | None = None
    region: str | None = None
    attempt: int | None = None
    error_code: str | None = None
    retryable: bool | None = None
    latency_ms: float | None = None
    action_id: str | None = None
    payload: dict[str, Any] | None = None


COLUMNS = Event.__struct_fields__
# Fields of `validate.check`'s dict that are columns here; the rest of a broadcast's go to payload.
_COMMON = frozenset(COLUMNS) - {"payload"}


def rfc3339(ms: int) -> str:
    """An event time (`ts`) back in SPEC §2's form: `2026-11-23T10:00:00.123Z`."""
    when = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return when.replace("+00:00", "Z")


def from_checked(checked: dict[str, Any]) -> Event:
    """The Event of an event `validate.check` accepted (its normalised dict)."""
    fields = {k: v for k, v in checked.items() if k in _COMMON}
    extra = {k: v for k, v in checked.items() if k not in _COMMON and k != "occurred_at"}
    return Event(**fields, payload=extra or None)
