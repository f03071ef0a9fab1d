"""The reference contract models (SPEC §2) and the JSON Schemas exported from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from herald import config
from herald.errors import HeraldError
from herald.model.contracts import (
    CHANNELS,
    MODELS,
    TYPES,
    AckEvent,
    BroadcastEvent,
    DeliveryEvent,
    export_schemas,
    json_schemas,
)
from herald.model.topics import INPUT_TOPICS

COMMON = {
    "event_id": "e-1",
    "tenant_id": "acme",
    "occurred_at": "2026-11-23T10:00:00.123+02:00",
    "schema_version": 1,
    "broadcast_id": "b-1",
}
RECIPIENT = {"user_id": "u-1", "channel": "sms", "region": "eu-west"}


def parse(model: type[Any], **fields: Any) -> Any:
    return model.model_validate_json(orjson.dumps({**COMMON, **fields}))


def test_broadcast_defaults_and_nulls_mean_defaults() -> None:
    for nulls in ({}, {"priority": None, "channels": None, "language": None}):
        b = parse(BroadcastEvent, type="created", **nulls)
        assert (b.priority, b.channels, b.language) == ("normal", [], "en")
        assert b.target_count is b.targeting is b.expires_at is b.title is None


def test_delivery_keeps_failure_fields_on_failures_only() -> None:
    extras = {"error_code": "E42", "retryable": False, "latency_ms": 12}
    failed = parse(DeliveryEvent, type="failed", **RECIPIENT, **extras)
    assert (failed.error_code, failed.retryable, failed.latency_ms) == ("E42", False, None)
    delivered = parse(DeliveryEvent, type="delivered", **RECIPIENT, **extras)
    assert (delivered.error_code, delivered.retryable, delivered.latency_ms) == (None, True, 12.0)
    assert parse(DeliveryEvent, type="queued", **RECIPIENT, attempt=None).attempt == 1


def test_unknown_fields_are_ignored() -> None:
    ack = parse(AckEvent, type="read", **RECIPIENT, added_in_v1_1={"x": 1})
    assert "added_in_v1_1" not in ack.model_dump()


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"attempt": True}, "attempt"),
        ({"attempt": "2"}, "attempt"),
        ({"attempt": 2.0}, "attempt"),
        ({"schema_version": True}, "schema_version"),
        ({"schema_version": 1.0}, "schema_version"),
        ({"schema_version": 2}, "schema_version"),
        ({"retryable": "false"}, "retryable"),
        ({"occurred_at": "2026-11-23T10:00:00"}, "occurred_at"),
        ({"occurred_at": "2026-02-29T10:00:00Z"}, "occurred_at"),
        ({"tenant_id": "a b"}, "tenant_id"),
    ],
)
def test_models_are_strict(fields: dict[str, Any], loc: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(DeliveryEvent, type="failed", **{**RECIPIENT, **fields})
    assert [e["loc"] for e in caught.value.errors()] == [(loc,)]


def test_unsupported_version_is_named() -> None:
    with pytest.raises(ValidationError, match="unsupported version 2"):
        parse(AckEvent, type="read", **RECIPIENT, schema_version=2)


def test_channels_agree_with_the_retry_settings() -> None:
    assert set(CHANNELS) == set(config.CHANNELS)


# --- JSON Schema --------------------------------------------------------------------------


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """A property's schema without the `null` branch optional fields carry."""
    prop = schema["properties"][name]
    branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
    assert len(branches) == 1
    return branches[0]


def test_json_schemas_state_the_contract() -> None:
    schemas = json_schemas()
    assert tuple(schemas) == INPUT_TOPICS
    common = ["event_id", "tenant_id", "occurred_at", "schema_version", "broadcast_id", "type"]
    recipient = ["user_id", "channel", "region"]
    for topic, schema in schemas.items():
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["required"] == common + (recipient if topic != "broadcasts" else [])
        assert schema.get("additionalProperties", True) is not False  # forward compatible
        assert _field(schema, "type")["enum"] == list(TYPES[topic])
        assert _field(schema, "schema_version") == {
            "type": "integer",
            "const": 1,
            "title": "Schema Version",
        }
        assert _field(schema, "tenant_id")["pattern"] == "^[A-Za-z0-9._-]+$"
        assert _field(schema, "tenant_id")["maxLength"] == 64
        assert _field(schema, "occurred_at")["format"] == "date-time"
        assert _field(schema, "event_id")["maxLength"] == 128


def test_json_schema_details_per_topic() -> None:
    broadcasts, deliveries, acks = (json_schemas()[t] for t in INPUT_TOPICS)
    assert _field(broadcasts, "channels")["items"]["enum"] == list(CHANNELS)
    assert broadcasts["properties"]["channels"]["default"] == []
    assert broadcasts["properties"]["priority"]["default"] == "normal"
    assert broadcasts["properties"]["language"]["default"] == "en"
    assert _field(broadcasts, "target_count")["minimum"] == 0
    assert _field(broadcasts, "ack_deadline_s")["exclusiveMinimum"] == 0
    assert _field(broadcasts, "title")["maxLength"] == 512
    assert broadcasts["$defs"]["Targeting"]["required"] == ["mode"]
    assert _field(deliveries, "region")["maxLength"] == 32
    assert _field(deliveries, "attempt")["minimum"] == 1
    assert deliveries["properties"]["retryable"]["default"] is True
    assert _field(deliveries, "latency_ms") == {"type": "number", "minimum": 0}
    assert _field(acks, "channel")["enum"] == list(CHANNELS)


def test_export_to_a_directory(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    listing = export_schemas(out)
    files = sorted(out.iterdir())
    assert [f.name for f in files] == sorted(f"{t}.schema.json" for t in MODELS)
    assert listing.splitlines() == [str(out / f"{t}.schema.json") for t in MODELS]
    for topic, schema in json_schemas().items():
        assert json.loads((out / f"{topic}.schema.json").read_text()) == schema


def test_export_to_stdout_is_one_document() -> None:
    assert json.loads(export_schemas(None)) == json_schemas()


def test_export_to_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(HeraldError, match="cannot write schemas to"):
        export_schemas(blocker)
