"""Hot-path validation of input events (SPEC §2): raw Kafka value in, normalised dict out.

`check` is orjson plus hand-written checks, because per-event pydantic validation costs about
twice the CPU (FACTS.md). `herald.model.contracts` holds the reference models; a differential test
(tests/test_validate.py) holds the two to the same verdict on every case of the corpus.

Measured (scratch script, 1M calls each, CPython 3.11, 2 shared cores under other load) on a
realistic `deliveries` event of 11 fields, in CPU-s per 1M events:
    orjson.loads alone                                0.76
    check, every timestamp distinct                   3.62
    check, timestamps repeating (broadcast fan-out)   2.58
    pydantic TypeAdapter(DeliveryEvent).validate_json 6.39
FACTS.md's 2.2-2.5 for "orjson + hand checks" covered fields and enums only; the timestamp
parse (0.6 us when not cached), length limits and the tenant pattern are the difference.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from herald.model.contracts import (
    CHANNELS,
    CONTENT_FORMATS,
    ID_MAX,
    INT_MAX,
    LANGUAGE_PATTERN,
    PRIORITIES,
    REGION_MAX,
    RFC3339_PATTERN,
    SCHEMA_VERSION,
    TARGETING_MODES,
    TENANT_MAX,
    TENANT_PATTERN,
    TITLE_MAX,
    TYPES,
)
from herald.model.topics import ACKS, BROADCASTS, DELIVERIES

_INSTANT = re.compile(RFC3339_PATTERN)
_TENANT = re.compile(TENANT_PATTERN)
_LANGUAGE = re.compile(LANGUAGE_PATTERN)

_CHANNELS = frozenset(CHANNELS)
_PRIORITIES = frozenset(PRIORITIES)
_CONTENT_FORMATS = frozenset(CONTENT_FORMATS)
_TARGETING_MODES = frozenset(TARGETING_MODES)
_TYPES = {topic: frozenset(types) for topic, types in TYPES.items()}

_fromisoformat = datetime.fromisoformat
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
# Timestamps recur: a broadcast fans out into thousands of deliveries stamped the same
# millisecond. Remembering recent ones skips the parse; clearing when full bounds memory.
_RECENT_INSTANTS: dict[str, int] = {}
_RECENT_MAX = 4096


class InvalidEvent(Exception):
    """A message that breaks the input contract; `str()` is a readable reason naming the field."""


# A metric label per kind of failure (herald_invalid_events_total{reason}): a handful of
# values whatever the input, where the messages themselves quote the offending data.
_REASONS = (
    ("missing field", "missing_field"),
    ("field 'schema_version'", "unsupported_version"),
    ("field ", "bad_field"),
    ("not valid UTF-8 JSON", "not_json"),
    ("message has no value", "no_value"),
    ("event must be a JSON object", "not_object"),
    ("occurred_at: ", "from_the_future"),
)


def reason(message: str) -> str:
    """The low-cardinality reason of an InvalidEvent's message."""
    return next((label for prefix, label in _REASONS if message.startswith(prefix)), "other")


def _show(value: Any) -> str:
    """A short rendering of an offending value: Python repr for strings, JSON otherwise."""
    shown_as_is = type(value) is str or (type(value) is float and not math.isfinite(value))
    text = repr(value) if shown_as_is else orjson.dumps(value).decode()
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(field: str, problem: str, value: Any) -> InvalidEvent:
    return InvalidEvent(f"field {field!r}: {problem} (got {_show(value)})")


def _text(value: Any, field: str, min_len: int, max_len: int) -> str:
    if type(value) is str and min_len <= len(value) <= max_len:
        return value
    raise _text_error(value, field, min_len, max_len)


def _text_error(value: Any, field: str, min_len: int, max_len: int) -> InvalidEvent:
    if type(value) is not str:
        return _bad(field, "must be a string", value)
    limits = f"{min_len} to {max_len}" if min_len else f"at most {max_len}"
    return InvalidEvent(f"field {field!r}: must be {limits} characters (got {len(value)})")


def _choice(value: Any, field: str, allowed: frozenset[str], listing: tuple[str, ...]) -> str:
    if type(value) is str and value in allowed:
        return value
    raise _choice_error(value, field, listing)


def _choice_error(value: Any, field: str, listing: tuple[str, ...]) -> InvalidEvent:
    return _bad(field, "must be one of " + ", ".join(listing), value)


def _integer(value: Any, field: str, minimum: int) -> int:
    # `type() is int` also refuses bool, which is an int subclass.
    if type(value) is int and minimum <= value <= INT_MAX:
        return value
    if type(value) is int and value > INT_MAX:
        raise _bad(field, "must be at most 2^63-1", value)
    raise _bad(field, f"must be an integer >= {minimum}", value)


def epoch_ms(value: Any, field: str) -> int:
    """Epoch milliseconds (floor) of an RFC 3339 timestamp with offset."""
    if type(value) is str:
        ms = _RECENT_INSTANTS.get(value)
        if ms is not None:
            return ms
    ms = _parse_epoch_ms(value, field)
    if len(_RECENT_INSTANTS) >= _RECENT_MAX:
        _RECENT_INSTANTS.clear()
    _RECENT_INSTANTS[value] = ms
    return ms


def _parse_epoch_ms(value: Any, field: str) -> int:
    """The pattern pins the RFC 3339 shape (fromisoformat alone takes many other ISO 8601
    forms); fromisoformat, in C, then refuses days no calendar has (2026-02-30, year 0)."""
    if type(value) is not str or _INSTANT.fullmatch(value) is None:
        raise _bad(field, "not RFC 3339 with offset", value)
    try:
        instant = _fromisoformat(value)
    except ValueError:
        try:  # fromisoformat refuses the lower-case t and z that RFC 3339 allows
            instant = _fromisoformat(value.upper())
        except ValueError:
            raise _bad(field, "not a real date and time", value) from None
    return (instant - _UNIX_EPOCH) // _MILLISECOND


def _common(topic: str, event: Any) -> dict[str, Any]:
    """The fields every event carries, validated and normalised."""
    if type(event) is not dict:
        raise InvalidEvent("event must be a JSON object")
    try:
        version = event["schema_version"]
        kind = event["type"]
        tenant = event["tenant_id"]
        event_id = event["event_id"]
        broadcast_id = event["broadcast_id"]
        occurred_at = event["occurred_at"]
    except KeyError as e:
        raise InvalidEvent(f"missing field {e.args[0]!r}") from None
    if type(version) is not int or version != SCHEMA_VERSION:
        raise _version_error(version)
    if type(kind) is not str or kind not in _TYPES[topic]:
        types = ", ".join(TYPES[topic])
        raise InvalidEvent(f"field 'type': {_show(kind)} is not a {topic} type ({types})")
    if type(tenant) is not str or len(tenant) > TENANT_MAX or not _TENANT.fullmatch(tenant):
        problem = f"must be 1 to {TENANT_MAX} characters of A-Z a-z 0-9 . _ -"
        raise _bad("tenant_id", problem, tenant)
    if type(event_id) is not str or not 0 < len(event_id) <= ID_MAX:
        raise _text_error(event_id, "event_id", 1, ID_MAX)
    if type(broadcast_id) is not str or not 0 < len(broadcast_id) <= ID_MAX:
        raise _text_error(broadcast_id, "broadcast_id", 1, ID_MAX)
    return {
        "topic": topic,
        "type": kind,
        "event_id": event_id,
        "tenant_id": tenant,
        "broadcast_id": broadcast_id,
        "occurred_at": occurred_at,
        "ts": epoch_ms(occurred_at, "occurred_at"),
    }


def _version_error(version: Any) -> InvalidEvent:
    if type(version) is int:
        return InvalidEvent(f"field 'schema_version': unsupported version {version}")
    return _bad("schema_version", f"must be the integer {SCHEMA_VERSION}", version)


def _recipient(event: dict[str, Any], out: dict[str, Any]) -> None:
    """user_id, channel and region, which deliveries and acks share."""
    try:
        user_id = event["user_id"]
        channel = event["channel"]
        region = event["region"]
    except KeyError as e:
        raise InvalidEvent(f"missing field {e.args[0]!r}") from None
    if type(user_id) is not str or not 0 < len(user_id) <= ID_MAX:
        raise _text_error(user_id, "user_id", 1, ID_MAX)
    if type(channel) is not str or channel not in _CHANNELS:
        raise _choice_error(channel, "channel", CHANNELS)
    if type(region) is not str or not 0 < len(region) <= REGION_MAX:
        raise _text_error(region, "region", 1, REGION_MAX)
    out["user_id"] = user_id
    out["channel"] = channel
    out["region"] = region


def _optional_text(value: Any, field: str, max_len: int = INT_MAX) -> str | None:
    return None if value is None else _text(value, field, 0, max_len)


def _targeting(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if type(value) is not dict:
        raise _bad("targeting", "must be an object", value)
    if "mode" not in value:
        raise InvalidEvent("missing field 'targeting.mode'")
    mode = _choice(value["mode"], "targeting.mode", _TARGETING_MODES, TARGETING_MODES)
    segment = value.get("segment")
    if segment is not None:
        _text(segment, "targeting.segment", 1, ID_MAX)
    user_ids = value.get("user_ids")
    if user_ids is not None:
        if type(user_ids) is not list:
            raise _bad("targeting.user_ids", "must be a list of strings", user_ids)
        for i, user_id in enumerate(user_ids):
            _text(user_id, f"targeting.user_ids[{i}]", 1, ID_MAX)
    return {"mode": mode, "segment": segment, "user_ids": user_ids}


def _channels(value: Any) -> list[str]:
    if value is None:
        return []
    if type(value) is not list:
        raise _bad("channels", "must be a list of channels", value)
    for i, channel in enumerate(value):
        _choice(channel, f"channels[{i}]", _CHANNELS, CHANNELS)
    return value


def _language(value: Any) -> str | None:
    if value is None:
        return None
    if type(value) is str and _LANGUAGE.fullmatch(value):
        return value
    raise _bad("language", "must be a BCP 47 language tag", value)


def _broadcast(event: dict[str, Any], out: dict[str, Any]) -> None:
    get = event.get
    priority = get("priority")
    target_count = get("target_count")
    content_format = get("content_format")
    ack_deadline_s = get("ack_deadline_s")
    expires_at = get("expires_at")
    # Absent descriptive fields stay None: the lifecycle row starts from SPEC's defaults
    # (normal, en), and an `updated` that leaves a field out must not reset it to them.
    out["priority"] = (
        None if priority is None else _choice(priority, "priority", _PRIORITIES, PRIORITIES)
    )
    out["channels"] = _channels(get("channels"))
    out["target_count"] = (
        None if target_count is None else _integer(target_count, "target_count", 0)
    )
    out["targeting"] = _targeting(get("targeting"))
    out["content_format"] = (
        None
        if content_format is None
        else _choice(content_format, "content_format", _CONTENT_FORMATS, CONTENT_FORMATS)
    )
    out["language"] = _language(get("language"))
    out["ack_deadline_s"] = (
        None if ack_deadline_s is None else _integer(ack_deadline_s, "ack_deadline_s", 1)
    )
    out["expires_ts"] = None if expires_at is None else epoch_ms(expires_at, "expires_at")
    out["title"] = _optional_text(get("title"), "title", TITLE_MAX)


def _delivery(event: dict[str, Any], out: dict[str, Any]) -> None:
    _recipient(event, out)
    get = event.get
    attempt = get("attempt")
    error_code = _optional_text(get("error_code"), "error_code")
    retryable = get("retryable")
    if retryable is not None and type(retryable) is not bool:
        raise _bad("retryable", "must be true or false", retryable)
    latency = get("latency_ms")
    if latency is not None:
        if (type(latency) is not float and type(latency) is not int) or not 0 <= latency < math.inf:
            raise _bad("latency_ms", "must be a finite number >= 0", latency)
        latency = float(latency)
    out["attempt"] = 1 if attempt is None else _integer(attempt, "attempt", 1)
    out["error_code"], out["retryable"], out["latency_ms"] = delivery_outcome(
        out["type"], error_code, retryable, latency
    )


def delivery_outcome(
    kind: str, error_code: str | None, retryable: bool | None, latency_ms: float | None
) -> tuple[str | None, bool, float | None]:
    """(error_code, retryable, latency_ms) as kept: error_code and retryable mean something on
    failures only (retryable by default), latency on deliveries only."""
    failed = kind == "failed"
    return (
        error_code if failed else None,
        retryable is not False or not failed,
        latency_ms if kind == "delivered" else None,
    )


def _ack(event: dict[str, Any], out: dict[str, Any]) -> None:
    _recipient(event, out)
    out["action_id"] = _optional_text(event.get("action_id"), "action_id")


_TOPIC_FIELDS = {BROADCASTS: _broadcast, DELIVERIES: _delivery, ACKS: _ack}


def check(topic: str, value: bytes | None) -> dict[str, Any]:
    """Validate one raw message of an input topic and return the normalised event.

    Raises InvalidEvent with a readable message; ValueError for a topic that is not an input
    topic (a programming error, not bad input).
    """
    topic_fields = _TOPIC_FIELDS.get(topic)
    if topic_fields is None:
        raise ValueError(f"not an input topic: {topic!r}")
    if value is None:  # a Kafka record with a null value (tombstone)
        raise InvalidEvent("message has no value")
    event = _loads(value)
    out = _common(topic, event)
    topic_fields(event, out)
    return out


def _loads(value: bytes) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as e:
        if "number is infinity" not in str(e):
            raise InvalidEvent(f"not valid UTF-8 JSON: {e}") from None
    # RFC 8259 leaves a number's range to the parser, and orjson refuses one past a double's.
    # In a field Herald does not know, such a number must not cost the event (the fast path
    # skips unknown fields unread), and in one it knows the field's own check refuses it. The
    # standard library reads it as infinity; dumping refuses the lone surrogates it lets by.
    try:
        event = json.loads(value.decode(), parse_constant=_no_constant)
        orjson.dumps(event)
    except (ValueError, orjson.JSONEncodeError) as e:
        raise InvalidEvent(f"not valid UTF-8 JSON: {e}") from None
    return event


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")
