"""The hot-path validator against SPEC §2 and against the reference pydantic models.

One corpus of valid and invalid messages drives three checks: `check` accepts exactly what the
models accept, every rejection names the field the models name, and valid events come out
normalised exactly as the pipeline expects.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from typing import Any

import jsonschema
import orjson
import pytest
from pydantic import ValidationError

from herald.model.contracts import MODELS, TYPES, json_schemas
from herald.streams.validate import InvalidEvent, check

DROP = object()  # an override that removes the field

COMMON = {
    "event_id": "e-1",
    "tenant_id": "acme",
    "occurred_at": "2026-11-23T10:00:00.123Z",
    "schema_version": 1,
    "broadcast_id": "b-1",
}
MINIMAL = {
    "broadcasts": {"type": "created"},
    "deliveries": {"type": "queued", "user_id": "u-1", "channel": "push", "region": "DE"},
    "acks": {"type": "read", "user_id": "u-1", "channel": "push", "region": "DE"},
}
REQUIRED = {
    "broadcasts": [*COMMON, "type"],
    "deliveries": [*COMMON, "type", "user_id", "channel", "region"],
    "acks": [*COMMON, "type", "user_id", "channel", "region"],
}
TEN_AM = int(datetime(2026, 11, 23, 10, tzinfo=UTC).timestamp()) * 1000


def event(topic: str, **fields: Any) -> dict[str, Any]:
    out = {**COMMON, **MINIMAL[topic], **fields}
    return {k: v for k, v in out.items() if v is not DROP}


def raw(topic: str, **fields: Any) -> bytes:
    return orjson.dumps(event(topic, **fields))


# --- the corpus --------------------------------------------------------------------------

VALID: list[tuple[str, bytes]] = [
    *((topic, raw(topic, type=kind)) for topic, kinds in TYPES.items() for kind in kinds),
    *(
        ("deliveries", raw("deliveries", occurred_at=when))
        for when in [
            "2026-11-23T12:00:00.123+02:00",
            "2026-11-23T04:30:00.9999-05:30",
            "2026-11-23t10:00:00z",
            "2026-11-23T10:00:00-00:00",
            "2026-11-23T10:00:00.123456789Z",
            "2028-02-29T00:00:00Z",
            "2000-02-29T00:00:00Z",
            "1969-12-31T23:59:59.9999Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59+23:59",
        ]
    ),
    *(
        ("broadcasts", raw("broadcasts", language=tag))
        for tag in [
            "en",
            "en-US",
            "zh-Hant-TW",
            "sr-Latn-RS",
            "de-CH-1996",
            "es-419",
            "x-private",
            "en-US-x-twain",
            "zh-yue-HK",
            "en-a-bbb-x-a-ccc",
            "EN-us",
        ]
    ),
    ("broadcasts", raw("broadcasts", targeting={"mode": "users", "user_ids": ["u1", "u2"]})),
    ("broadcasts", raw("broadcasts", targeting={"mode": "segment", "segment": "vip"})),
    ("broadcasts", raw("broadcasts", targeting={"mode": "all", "future": 1})),
    ("broadcasts", raw("broadcasts", targeting={"mode": "all", "segment": None})),
    ("broadcasts", raw("broadcasts", channels=[], target_count=0, title="")),
    ("broadcasts", raw("broadcasts", target_count=2**63 - 1, title="t" * 512)),
    ("broadcasts", raw("broadcasts", expires_at="2026-12-01T00:00:00+01:00")),
    ("broadcasts", raw("broadcasts", priority=None, channels=None, language=None, title=None)),
    ("deliveries", raw("deliveries", type="failed", error_code="", retryable=False)),
    ("deliveries", raw("deliveries", type="delivered", latency_ms=0)),
    ("deliveries", raw("deliveries", type="delivered", latency_ms=1.5e6)),
    ("deliveries", raw("deliveries", type="queued", error_code="E1", latency_ms=5)),
    ("deliveries", raw("deliveries", attempt=None, retryable=None, latency_ms=None)),
    ("deliveries", raw("deliveries", attempt=2**63 - 1)),
    ("deliveries", raw("deliveries", region="r" * 32, user_id="u" * 128, event_id="e" * 128)),
    ("deliveries", raw("deliveries", tenant_id="A-z_0.9" + "x" * 57)),
    ("deliveries", raw("deliveries", event_id="ünïcödé 🎉", user_id="用户")),
    ("acks", raw("acks", type="clicked", action_id="btn-ok")),
    ("acks", raw("acks", action_id=None, unknown_field={"nested": [1, 2]})),
    (
        "acks",
        b' {"event_id":"e","tenant_id":"t","occurred_at":"2026-11-23T10:00:00Z",'
        b'"schema_version":1,"broadcast_id":"b","type":"read","user_id":"u","channel":"sms",'
        b'"region":"DE"}\n',
    ),
]

# (topic, message, the field the error must name, or None for a whole-message error)
INVALID: list[tuple[str, bytes, str | None]] = [
    ("acks", b"\xff\xfe{}", None),
    ("acks", b'{"event_id": "\xff"}', None),
    ("acks", b'\xef\xbb\xbf{"event_id": "e"}', None),
    ("acks", b"", None),
    ("acks", b"{", None),
    ("acks", b"nope", None),
    ("acks", b'{"a": 1}{"b": 2}', None),
    ("acks", b'{"event_id": "\\ud800"}', None),
    ("acks", b"[]", None),
    ("acks", b'[{"event_id": "e"}]', None),
    ("acks", b'"an event"', None),
    ("acks", b"42", None),
    ("acks", b"null", None),
    ("deliveries", raw("deliveries", latency_ms=0).replace(b":0}", b":NaN}"), None),
    *((t, raw(t, **{f: DROP}), f) for t, fields in REQUIRED.items() for f in fields),
    *((t, raw(t, **{f: None}), f) for t, fields in REQUIRED.items() for f in fields),
    # wrong JSON types
    ("acks", raw("acks", event_id=5), "event_id"),
    ("acks", raw("acks", tenant_id=["acme"]), "tenant_id"),
    ("acks", raw("acks", occurred_at=1_795_000_000), "occurred_at"),
    ("acks", raw("acks", broadcast_id={}), "broadcast_id"),
    ("acks", raw("acks", user_id=1), "user_id"),
    ("acks", raw("acks", channel=1), "channel"),
    ("acks", raw("acks", channel=["push"]), "channel"),
    ("acks", raw("acks", region=True), "region"),
    ("acks", raw("acks", action_id=5), "action_id"),
    ("acks", raw("acks", type=5), "type"),
    ("acks", raw("acks", type=["read"]), "type"),
    ("broadcasts", raw("broadcasts", channels="push"), "channels"),
    ("broadcasts", raw("broadcasts", channels=[1]), "channels[0]"),
    ("broadcasts", raw("broadcasts", target_count="5"), "target_count"),
    ("broadcasts", raw("broadcasts", target_count=5.0), "target_count"),
    ("broadcasts", raw("broadcasts", target_count=2**63), "target_count"),
    (
        "broadcasts",
        b'{"target_count": 99999999999999999999999, ' + raw("broadcasts")[1:],
        "target_count",
    ),
    ("broadcasts", raw("broadcasts", title=5), "title"),
    ("broadcasts", raw("broadcasts", language=5), "language"),
    ("broadcasts", raw("broadcasts", priority=1), "priority"),
    ("broadcasts", raw("broadcasts", expires_at=1), "expires_at"),
    ("deliveries", raw("deliveries", attempt="2"), "attempt"),
    ("deliveries", raw("deliveries", attempt=2.0), "attempt"),
    ("deliveries", raw("deliveries", type="failed", error_code=500), "error_code"),
    ("deliveries", raw("deliveries", type="failed", retryable="false"), "retryable"),
    ("deliveries", raw("deliveries", type="failed", retryable=0), "retryable"),
    ("deliveries", raw("deliveries", type="delivered", latency_ms="5"), "latency_ms"),
    ("deliveries", raw("deliveries", type="delivered", latency_ms=[5]), "latency_ms"),
    # ill-typed fields are refused even where their value would be normalised away
    ("deliveries", raw("deliveries", type="queued", retryable="no"), "retryable"),
    ("deliveries", raw("deliveries", type="queued", latency_ms="fast"), "latency_ms"),
    # bool is not an int
    ("deliveries", raw("deliveries", attempt=True), "attempt"),
    ("deliveries", raw("deliveries", type="delivered", latency_ms=True), "latency_ms"),
    ("broadcasts", raw("broadcasts", target_count=True), "target_count"),
    ("broadcasts", raw("broadcasts", ack_deadline_s=True), "ack_deadline_s"),
    ("acks", raw("acks", schema_version=True), "schema_version"),
    # schema_version
    ("acks", raw("acks", schema_version=2), "schema_version"),
    ("acks", raw("acks", schema_version=0), "schema_version"),
    ("acks", raw("acks", schema_version="1"), "schema_version"),
    ("acks", raw("acks", schema_version=1.0), "schema_version"),
    # lengths
    ("acks", raw("acks", event_id=""), "event_id"),
    ("acks", raw("acks", event_id="e" * 129), "event_id"),
    ("acks", raw("acks", broadcast_id=""), "broadcast_id"),
    ("acks", raw("acks", broadcast_id="b" * 129), "broadcast_id"),
    ("acks", raw("acks", user_id=""), "user_id"),
    ("acks", raw("acks", user_id="u" * 129), "user_id"),
    ("acks", raw("acks", region=""), "region"),
    ("acks", raw("acks", region="r" * 33), "region"),
    ("deliveries", raw("deliveries", region="r" * 33), "region"),
    ("acks", raw("acks", tenant_id=""), "tenant_id"),
    ("acks", raw("acks", tenant_id="t" * 65), "tenant_id"),
    ("broadcasts", raw("broadcasts", title="t" * 513), "title"),
    (
        "broadcasts",
        raw("broadcasts", targeting={"mode": "segment", "segment": ""}),
        "targeting.segment",
    ),
    (
        "broadcasts",
        raw("broadcasts", targeting={"mode": "users", "user_ids": ["u", ""]}),
        "targeting.user_ids[1]",
    ),
    # tenant characters
    *(
        ("acks", raw("acks", tenant_id=tenant), "tenant_id")
        for tenant in ["acme corp", "acme/x", "ácme", "acme\n", "acme:1", "٣"]
    ),
    # enums
    ("acks", raw("acks", channel="fax"), "channel"),
    ("acks", raw("acks", channel="PUSH"), "channel"),
    ("deliveries", raw("deliveries", channel="fax"), "channel"),
    ("broadcasts", raw("broadcasts", priority="urgent"), "priority"),
    ("broadcasts", raw("broadcasts", channels=["push", "fax"]), "channels[1]"),
    ("broadcasts", raw("broadcasts", content_format="pdf"), "content_format"),
    ("broadcasts", raw("broadcasts", targeting={"mode": "everyone"}), "targeting.mode"),
    # type not of this topic
    ("deliveries", raw("deliveries", type="opened"), "type"),
    ("deliveries", raw("deliveries", type="read"), "type"),
    ("acks", raw("acks", type="delivered"), "type"),
    ("broadcasts", raw("broadcasts", type="failed"), "type"),
    ("broadcasts", raw("broadcasts", type="Created"), "type"),
    # timestamps
    *(
        ("deliveries", raw("deliveries", occurred_at=when), "occurred_at")
        for when in [
            "2026-11-23 10:00",
            "2026-11-23 10:00:00Z",
            "2026-11-23T10:00:00",
            "2026-11-23T10:00:00.123",
            "2026-11-23T10:00Z",
            "2026-11-23",
            "2026-11-23T10:00:00+0200",
            "2026-11-23T10:00:00+02",
            "2026-11-23T10:00:00+02:00:00",
            "20261123T100000Z",
            "2026-W47-1T10:00:00Z",
            "2026-11-23T10:00:00,5Z",
            "2026-11-23T10:00:00.Z",
            "٢٠٢٦-11-23T10:00:00Z",
            "2026-11-23T10:00:00Z\n",
            " 2026-11-23T10:00:00Z",
            "2026-02-30T10:00:00Z",
            "2025-02-29T10:00:00Z",
            "1900-02-29T10:00:00Z",
            "2026-04-31T10:00:00Z",
            "2026-13-01T10:00:00Z",
            "2026-00-01T10:00:00Z",
            "2026-11-00T10:00:00Z",
            "2026-11-23T24:00:00Z",
            "2026-11-23T10:60:00Z",
            "2026-11-23T10:00:60Z",
            "2026-11-23T10:00:00+24:00",
            "2026-11-23T10:00:00+02:60",
            "0000-01-01T00:00:00Z",
            "",
        ]
    ),
    ("broadcasts", raw("broadcasts", expires_at="2026-12-01"), "expires_at"),
    ("broadcasts", raw("broadcasts", expires_at="2026-02-30T00:00:00Z"), "expires_at"),
    # targeting
    ("broadcasts", raw("broadcasts", targeting="all"), "targeting"),
    ("broadcasts", raw("broadcasts", targeting=["all"]), "targeting"),
    ("broadcasts", raw("broadcasts", targeting={}), "targeting.mode"),
    ("broadcasts", raw("broadcasts", targeting={"mode": None}), "targeting.mode"),
    (
        "broadcasts",
        raw("broadcasts", targeting={"mode": "users", "user_ids": "u1"}),
        "targeting.user_ids",
    ),
    (
        "broadcasts",
        raw("broadcasts", targeting={"mode": "users", "user_ids": [1]}),
        "targeting.user_ids[0]",
    ),
    (
        "broadcasts",
        raw("broadcasts", targeting={"mode": "segment", "segment": 5}),
        "targeting.segment",
    ),
    # ranges
    ("broadcasts", raw("broadcasts", target_count=-1), "target_count"),
    ("broadcasts", raw("broadcasts", ack_deadline_s=0), "ack_deadline_s"),
    ("broadcasts", raw("broadcasts", ack_deadline_s=-5), "ack_deadline_s"),
    ("broadcasts", raw("broadcasts", ack_deadline_s=1.5), "ack_deadline_s"),
    ("deliveries", raw("deliveries", attempt=0), "attempt"),
    ("deliveries", raw("deliveries", attempt=-1), "attempt"),
    ("deliveries", raw("deliveries", type="delivered", latency_ms=-1), "latency_ms"),
    ("deliveries", raw("deliveries", type="delivered", latency_ms=-0.5), "latency_ms"),
    # language tags
    *(
        ("broadcasts", raw("broadcasts", language=tag), "language")
        for tag in [
            "",
            "e",
            "english!",
            "en_US",
            "en-",
            "-en",
            "en--US",
            "en-US-",
            "x",
            "en-x",
            "abcdefghi",
            "en-US\n",
        ]
    ),
]


def _case_id(case: tuple[Any, ...]) -> str:
    return f"{case[0]}-{case[2] if len(case) > 2 else orjson.loads(case[1])['type']}"


# --- check and the models agree -----------------------------------------------------------


def _model_error_fields(topic: str, message: bytes) -> set[str] | None:
    """Fields the reference model names for `message`, or None if the model accepts it."""
    try:
        MODELS[topic].model_validate_json(message)
    except ValidationError as e:
        return {_loc_name(err["loc"]) for err in e.errors()}
    return None


def _loc_name(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _named_field(message: str) -> str | None:
    m = re.match(r"(?:missing )?field '([^']+)'", message)
    return m.group(1) if m else None


@pytest.mark.parametrize("case", VALID, ids=_case_id)
def test_valid_events_pass_both(case: tuple[str, bytes]) -> None:
    topic, message = case
    out = check(topic, message)
    model = MODELS[topic].model_validate_json(message).model_dump()
    shared = {k: model[k] for k in model.keys() & out.keys()}
    # A descriptive field left out stays None in `check` (the lifecycle row applies SPEC's
    # default, so that an `updated` leaving it out keeps it); the model fills the default in.
    defaults = MODELS[topic].model_fields
    left_out = {k for k in shared if out[k] is None and model[k] == defaults[k].default}
    assert {k: out[k] for k in shared if k not in left_out} == {
        k: v for k, v in shared.items() if k not in left_out
    }
    assert out["topic"] == topic


@pytest.mark.parametrize("case", INVALID, ids=_case_id)
def test_invalid_messages_fail_both_naming_the_field(case: tuple[str, bytes, str | None]) -> None:
    topic, message, field = case
    with pytest.raises(InvalidEvent) as caught:
        check(topic, message)
    model_fields = _model_error_fields(topic, message)
    assert model_fields is not None, "the reference model accepts what check refuses"
    named = _named_field(str(caught.value))
    assert named == field, str(caught.value)
    if field is not None:  # pydantic may parse NaN, say, and blame a field: no matter
        assert field in model_fields, (str(caught.value), model_fields)


ODD_VALUES = [
    None,
    True,
    False,
    0,
    1,
    -1,
    1.5,
    2**63,
    2**64 - 1,
    "",
    "x" * 129,
    "push",
    "DE",
    "2026-11-23T10:00:00Z",
    [],
    ["sms"],
    {},
    {"mode": "all"},
]


def test_check_and_models_agree_on_every_field_set_to_odd_values() -> None:
    """Every field of every valid event, set to each odd value: same verdict, same field."""
    for topic, message in VALID:
        original = orjson.loads(message)
        for field in [*original, *MODELS[topic].model_fields]:
            for value in ODD_VALUES:
                mutated = orjson.dumps({**original, field: value})
                model_fields = _model_error_fields(topic, mutated)
                try:
                    check(topic, mutated)
                except InvalidEvent as e:
                    assert model_fields is not None, mutated
                    assert _named_field(str(e)) in model_fields, (str(e), model_fields)
                else:
                    assert model_fields is None, (mutated, model_fields)


def test_damaged_bytes_only_ever_raise_invalid_event() -> None:
    """Truncated and bit-flipped messages: the worker must never see another exception."""
    rng = random.Random(7)
    for _ in range(3000):
        topic, message = rng.choice(VALID)
        damaged = bytearray(message)
        if rng.random() < 0.3:
            del damaged[rng.randrange(len(damaged)) :]
        else:
            for _ in range(rng.randint(1, 3)):
                damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        try:
            check(topic, bytes(damaged))
        except InvalidEvent:
            assert _model_error_fields(topic, bytes(damaged)) is not None, bytes(damaged)
        else:
            assert _model_error_fields(topic, bytes(damaged)) is None, bytes(damaged)


def test_corpus_covers_every_field_and_type() -> None:
    named = {field for _, _, field in INVALID if field}
    for model in MODELS.values():
        assert set(model.model_fields) <= named
    kinds = {orjson.loads(m)["type"] for _, m in VALID}
    assert kinds >= {k for ts in TYPES.values() for k in ts}


def test_exported_json_schemas_agree_on_the_corpus() -> None:
    validators = {t: jsonschema.Draft202012Validator(s) for t, s in json_schemas().items()}
    for topic, message in VALID:
        assert validators[topic].is_valid(orjson.loads(message)), message
    for topic, message, field in INVALID:
        if field is None or _beyond_json_schema(orjson.loads(message), field):
            continue
        assert not validators[topic].is_valid(orjson.loads(message)), message


IMPOSSIBLE_DAYS = {"2026-02-30", "2025-02-29", "1900-02-29", "2026-04-31", "0000-01-01"}


def _beyond_json_schema(event: dict[str, Any], field: str) -> bool:
    """Cases the exported schema cannot or need not catch."""
    value = event.get(field)
    if type(value) is float:
        return value.is_integer()  # JSON Schema counts 5.0 as an integer
    if type(value) is not str:
        return False
    # A pattern cannot know month lengths; Python's jsonschema lets `$` match before a final
    # newline, which ECMA-262 regular expressions (the ones JSON Schema specifies) do not.
    return value[:10] in IMPOSSIBLE_DAYS or value.endswith("\n")


# --- messages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "message", "error"),
    [
        (
            "acks",
            raw("acks", channel="fax"),
            "field 'channel': must be one of sse, in_app, push, email, sms (got 'fax')",
        ),
        ("acks", b"\xff", "not valid UTF-8 JSON: "),
        ("acks", b"[1]", "event must be a JSON object"),
        (
            "acks",
            raw("acks", occurred_at="2026-11-23 10:00"),
            "field 'occurred_at': not RFC 3339 with offset (got '2026-11-23 10:00')",
        ),
        (
            "acks",
            raw("acks", occurred_at="2026-02-30T10:00:00Z"),
            "field 'occurred_at': not a real date and time (got '2026-02-30T10:00:00Z')",
        ),
        ("acks", raw("acks", schema_version=2), "field 'schema_version': unsupported version 2"),
        (
            "acks",
            raw("acks", schema_version="1"),
            "field 'schema_version': must be the integer 1 (got '1')",
        ),
        (
            "deliveries",
            raw("deliveries", type="opened"),
            "field 'type': 'opened' is not a deliveries type (queued, attempted, delivered, "
            "failed, pending, expired)",
        ),
        ("acks", raw("acks", tenant_id=DROP), "missing field 'tenant_id'"),
        (
            "acks",
            raw("acks", region="r" * 33),
            "field 'region': must be 1 to 32 characters (got 33)",
        ),
        (
            "broadcasts",
            raw("broadcasts", title="t" * 513),
            "field 'title': must be at most 512 characters (got 513)",
        ),
        (
            "deliveries",
            raw("deliveries", attempt=True),
            "field 'attempt': must be an integer >= 1 (got true)",
        ),
        (
            "broadcasts",
            raw("broadcasts", target_count=-1),
            "field 'target_count': must be an integer >= 0 (got -1)",
        ),
        ("acks", raw("acks", user_id=None), "field 'user_id': must be a string (got null)"),
        (
            "acks",
            raw("acks", event_id="x" * 200),
            "field 'event_id': must be 1 to 128 characters (got 200)",
        ),
        (
            "acks",
            raw("acks", tenant_id="x" * 100),
            "field 'tenant_id': must be 1 to 64 characters of A-Z a-z 0-9 . _ - "
            f"(got '{'x' * 56}...)",
        ),
    ],
)
def test_error_messages_are_readable(topic: str, message: bytes, error: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        check(topic, message)
    assert str(caught.value).startswith(error)


def test_a_number_past_a_double_costs_the_event_only_in_a_known_field() -> None:
    assert check("acks", raw("acks")[:-1] + b',"future_field":1e400}')["user_id"] == "u-1"
    with pytest.raises(
        InvalidEvent, match=r"field 'latency_ms': must be a finite number >= 0 \(got inf\)"
    ):
        check("deliveries", raw("deliveries", type="delivered")[:-1] + b',"latency_ms":1e400}')
    with pytest.raises(InvalidEvent, match="not valid UTF-8 JSON"):
        check("acks", raw("acks")[:-1] + b',"x":1e400,"y":"\\ud800"}')


def test_a_record_without_value_is_invalid() -> None:
    with pytest.raises(InvalidEvent, match="message has no value"):
        check("acks", None)


def test_unknown_topic_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="not an input topic"):
        check("herald.invalid", raw("acks"))


# --- normalised output --------------------------------------------------------------------

COMMON_OUT = {
    "event_id": "e-1",
    "tenant_id": "acme",
    "broadcast_id": "b-1",
    "occurred_at": "2026-11-23T10:00:00.123Z",
    "ts": TEN_AM + 123,
}


def test_broadcast_defaults() -> None:
    assert check("broadcasts", raw("broadcasts")) == {
        **COMMON_OUT,
        "topic": "broadcasts",
        "type": "created",
        "priority": None,
        "channels": [],
        "target_count": None,
        "targeting": None,
        "content_format": None,
        "language": None,
        "ack_deadline_s": None,
        "expires_ts": None,
        "title": None,
    }


def test_broadcast_all_fields() -> None:
    message = raw(
        "broadcasts",
        type="sent",
        priority="critical",
        channels=["push", "email"],
        target_count=1000,
        targeting={"mode": "users", "user_ids": ["u1"], "extra": True},
        content_format="markdown",
        language="de-CH",
        ack_deadline_s=600,
        expires_at="2026-11-24T10:00:00.5+01:00",
        title="Storm warning",
    )
    assert check("broadcasts", message) == {
        **COMMON_OUT,
        "topic": "broadcasts",
        "type": "sent",
        "priority": "critical",
        "channels": ["push", "email"],
        "target_count": 1000,
        "targeting": {"mode": "users", "segment": None, "user_ids": ["u1"]},
        "content_format": "markdown",
        "language": "de-CH",
        "ack_deadline_s": 600,
        "expires_ts": TEN_AM + 23 * 3600_000 + 500,
        "title": "Storm warning",
    }


DELIVERY_OUT = {
    **COMMON_OUT,
    "topic": "deliveries",
    "user_id": "u-1",
    "channel": "push",
    "region": "DE",
    "attempt": 1,
    "error_code": None,
    "retryable": True,
    "latency_ms": None,
}


@pytest.mark.parametrize(
    ("fields", "normalised"),
    [
        ({"type": "queued"}, {"type": "queued"}),
        (
            {"type": "failed", "error_code": "E42", "retryable": False, "attempt": 3},
            {"type": "failed", "error_code": "E42", "retryable": False, "attempt": 3},
        ),
        ({"type": "failed"}, {"type": "failed"}),
        ({"type": "delivered", "latency_ms": 250}, {"type": "delivered", "latency_ms": 250.0}),
        (
            {"type": "queued", "error_code": "E1", "retryable": False, "latency_ms": 3.5},
            {"type": "queued"},
        ),
        ({"type": "delivered", "error_code": "E1", "retryable": False}, {"type": "delivered"}),
        ({"type": "failed", "latency_ms": 3.5}, {"type": "failed"}),
    ],
)
def test_delivery_normalisation(fields: dict[str, Any], normalised: dict[str, Any]) -> None:
    out = check("deliveries", raw("deliveries", **fields))
    assert out == {**DELIVERY_OUT, **normalised}
    assert type(out["latency_ms"]) in (float, type(None))


def test_ack_output() -> None:
    out = check("acks", raw("acks", type="responded", action_id="opt-2"))
    assert out == {
        **COMMON_OUT,
        "topic": "acks",
        "type": "responded",
        "user_id": "u-1",
        "channel": "push",
        "region": "DE",
        "action_id": "opt-2",
    }
    assert check("acks", raw("acks"))["action_id"] is None


@pytest.mark.parametrize(
    ("occurred_at", "ts"),
    [
        ("2026-11-23T10:00:00Z", TEN_AM),
        ("2026-11-23T10:00:00.123Z", TEN_AM + 123),
        ("2026-11-23T12:00:00.123+02:00", TEN_AM + 123),
        ("2026-11-23T04:30:00.9999-05:30", TEN_AM + 999),
        ("2026-11-23T10:00:00.5Z", TEN_AM + 500),
        ("2026-11-23T10:00:00.123456789Z", TEN_AM + 123),
        ("2026-11-23t10:00:00.001z", TEN_AM + 1),
        ("2026-11-23T10:00:00-00:00", TEN_AM),
        ("2026-11-24T09:59:00+23:59", TEN_AM),
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.9999Z", -1),
        ("2028-02-29T00:00:00Z", 1835395200000),
    ],
)
def test_ts_is_epoch_milliseconds_floored(occurred_at: str, ts: int) -> None:
    out = check("acks", raw("acks", occurred_at=occurred_at))
    assert (out["ts"], out["occurred_at"]) == (ts, occurred_at)


def test_output_is_json_serialisable() -> None:
    for topic, message in VALID:
        out = check(topic, message)
        assert orjson.loads(orjson.dumps(out)) == out
