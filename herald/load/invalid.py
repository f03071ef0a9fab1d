"""The catalogue of invalid messages (SPEC §2): every kind, each a corruption of a valid
event's fields. The simulator applies them to copies of valid events of the right topic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from herald.model import topics

Corruption = Callable[[dict[str, Any]], bytes]


def _dumps_with(**changes: Any) -> Corruption:
    return lambda f: orjson.dumps({**f, **changes})


def _dumps_without(name: str) -> Corruption:
    return lambda f: orjson.dumps({k: v for k, v in f.items() if k != name})


# Every kind of invalid message of SPEC §2: (name, topic of the base event, corruption).
INVALID_KINDS: tuple[tuple[str, str, Corruption], ...] = (
    ("not_utf8", topics.DELIVERIES, lambda f: orjson.dumps(f).replace(b'"type"', b'"\xff\xfe"')),
    ("not_json", topics.ACKS, lambda f: orjson.dumps(f)[:-7]),
    ("empty", topics.DELIVERIES, lambda f: b""),
    ("not_an_object", topics.BROADCASTS, lambda f: orjson.dumps([f])),
    ("missing_event_id", topics.DELIVERIES, _dumps_without("event_id")),
    ("missing_tenant_id", topics.ACKS, _dumps_without("tenant_id")),
    ("missing_occurred_at", topics.BROADCASTS, _dumps_without("occurred_at")),
    ("missing_broadcast_id", topics.DELIVERIES, _dumps_without("broadcast_id")),
    ("missing_user_id", topics.ACKS, _dumps_without("user_id")),
    ("missing_region", topics.DELIVERIES, _dumps_without("region")),
    ("bad_type", topics.DELIVERIES, _dumps_with(type="exploded")),
    ("type_of_other_topic", topics.ACKS, _dumps_with(type="delivered")),
    ("bad_channel", topics.DELIVERIES, _dumps_with(channel="pigeon")),
    ("bad_priority", topics.BROADCASTS, _dumps_with(priority="urgent")),
    ("bad_broadcast_channels", topics.BROADCASTS, _dumps_with(channels=["fax"])),
    ("timestamp_without_offset", topics.ACKS, _dumps_with(occurred_at="2026-11-23T10:00:00")),
    ("timestamp_not_a_date", topics.DELIVERIES, _dumps_with(occurred_at="yesterday")),
    ("timestamp_impossible", topics.ACKS, _dumps_with(occurred_at="2026-02-30T25:00:00Z")),
    ("schema_version_2", topics.DELIVERIES, _dumps_with(schema_version=2)),
    ("schema_version_string", topics.BROADCASTS, _dumps_with(schema_version="1")),
    ("bad_tenant_id", topics.DELIVERIES, _dumps_with(tenant_id="acme corp!")),
    ("event_id_too_long", topics.ACKS, _dumps_with(event_id="e" * 129)),
    ("empty_broadcast_id", topics.BROADCASTS, _dumps_with(broadcast_id="")),
    ("region_too_long", topics.DELIVERIES, _dumps_with(region="r" * 33)),
    ("attempt_zero", topics.DELIVERIES, _dumps_with(attempt=0)),
    ("attempt_string", topics.DELIVERIES, _dumps_with(attempt="2")),
    ("retryable_not_bool", topics.DELIVERIES, _dumps_with(type="failed", retryable="yes")),
    ("negative_target_count", topics.BROADCASTS, _dumps_with(target_count=-1)),
    ("zero_ack_deadline", topics.BROADCASTS, _dumps_with(ack_deadline_s=0)),
    ("bad_targeting_mode", topics.BROADCASTS, _dumps_with(targeting={"mode": "everyone"})),
    ("title_too_long", topics.BROADCASTS, _dumps_with(title="t" * 513)),
    ("user_id_number", topics.ACKS, _dumps_with(user_id=42)),
)
