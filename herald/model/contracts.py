"""Input event contracts (SPEC §2) as pydantic models: the reference definition.

The worker's hot path validates with the hand-written `herald.streams.validate.check`, which
costs about half the CPU; these models are the readable contract, the source of the exported JSON
Schemas, and the oracle a differential test holds `check` to. The enums, patterns and limits
below are shared by both, so the two cannot drift on them.

Conventions both implementations follow:
- strict JSON types: `true` is not an integer, `"1"` is not the number 1, `1.0` is not an integer;
- integers must fit a signed 64-bit column (`INT_MAX`);
- an optional field may be absent or `null`, which means "use the default";
- unknown fields are ignored, so producers can add fields before Herald knows them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from herald.errors import HeraldError
from herald.model.topics import ACKS, BROADCASTS, DELIVERIES

SCHEMA_VERSION = 1
INT_MAX = 2**63 - 1
ID_MAX = 128  # event_id, broadcast_id, user_id, segment
TENANT_MAX = 64
REGION_MAX = 32
TITLE_MAX = 512

Channel = Literal["sse", "in_app", "push", "email", "sms"]
Priority = Literal["low", "normal", "high", "critical"]
ContentFormat = Literal["text", "markdown", "html", "media", "interactive"]
TargetingMode = Literal["all", "users", "segment"]
BroadcastType = Literal[
    "created", "scheduled", "sent", "updated", "cancelled", "expired", "completed"
]
DeliveryType = Literal["queued", "attempted", "delivered", "failed", "pending", "expired"]
AckType = Literal["received", "read", "clicked", "dismissed", "responded"]

CHANNELS: tuple[str, ...] = get_args(Channel)
PRIORITIES: tuple[str, ...] = get_args(Priority)
CONTENT_FORMATS: tuple[str, ...] = get_args(ContentFormat)
TARGETING_MODES: tuple[str, ...] = get_args(TargetingMode)
TYPES: dict[str, tuple[str, ...]] = {
    BROADCASTS: get_args(BroadcastType),
    DELIVERIES: get_args(DeliveryType),
    ACKS: get_args(AckType),
}

TENANT_PATTERN = r"^[A-Za-z0-9._-]+$"
# RFC 3339 date-time; the offset is mandatory. ASCII digits only (`\d` would take any script's).
# Fields are range-checked here too; only the day of the month needs a calendar.
RFC3339_PATTERN = (
    r"^([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"[Tt]([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])(\.[0-9]+)?"
    r"([Zz]|([+-])([01][0-9]|2[0-3]):([0-5][0-9]))$"
)
# BCP 47 (RFC 5646) syntax: langtag or private use; irregular grandfathered tags are not taken.
LANGUAGE_PATTERN = (
    r"^(?:(?:[A-Za-z]{2,3}(?:-[A-Za-z]{3}){0,3}|[A-Za-z]{4,8})"  # language[-extlang]
    r"(?:-[A-Za-z]{4})?"  # script
    r"(?:-(?:[A-Za-z]{2}|[0-9]{3}))?"  # region
    r"(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*"  # variants
    r"(?:-[0-9A-WY-Za-wy-z](?:-[A-Za-z0-9]{2,8})+)*"  # extensions
    r"(?:-[Xx](?:-[A-Za-z0-9]{1,8})+)?"  # private use
    r"|[Xx](?:-[A-Za-z0-9]{1,8})+)$"
)

_RFC3339 = re.compile(RFC3339_PATTERN)


def _real_instant(value: str) -> str:
    """Reject what the pattern lets through but no calendar has: 2026-02-30, year 0."""
    m = _RFC3339.fullmatch(value)
    assert m is not None  # the pattern constraint has already run
    y, mo, d, h, mi, s, _, _, sign, oh, om = m.groups()
    try:
        offset = timedelta(hours=int(oh or 0), minutes=int(om or 0))
        tz = timezone(-offset if sign == "-" else offset)
        datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=tz)
    except ValueError:
        raise ValueError("not a real date and time") from None
    return value


def _supported_version(value: int) -> int:
    if value != SCHEMA_VERSION:
        raise ValueError(f"unsupported version {value}")
    return value


def _null_means(default: Callable[[], Any]) -> AfterValidator:
    """`null` in an optional field with a default stands for the default."""
    return AfterValidator(lambda v: default() if v is None else v)


Rfc3339 = Annotated[
    str,
    StringConstraints(pattern=RFC3339_PATTERN),
    AfterValidator(_real_instant),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": RFC3339_PATTERN}),
]
Id = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX)]
Region = Annotated[str, StringConstraints(min_length=1, max_length=REGION_MAX)]
TenantId = Annotated[
    str, StringConstraints(min_length=1, max_length=TENANT_MAX, pattern=TENANT_PATTERN)
]
SchemaVersion = Annotated[
    StrictInt,
    AfterValidator(_supported_version),
    WithJsonSchema({"type": "integer", "const": SCHEMA_VERSION}),
]
Count = Annotated[int, Field(ge=0, le=INT_MAX)]


class _Contract(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


class _Event(_Contract):
    """Fields every input event carries (SPEC §2); `type` is declared per topic."""

    event_id: Id = Field(description="unique per tenant; duplicates are counted once")
    tenant_id: TenantId
    occurred_at: Rfc3339 = Field(description="event time, RFC 3339 with offset")
    schema_version: SchemaVersion
    broadcast_id: Id


class Targeting(_Contract):
    mode: TargetingMode
    segment: Id | None = None
    user_ids: list[Id] | None = None


class BroadcastEvent(_Event):
    """Topic `broadcasts`: the lifecycle of a broadcast."""

    type: BroadcastType
    priority: Annotated[Priority | None, _null_means(lambda: "normal")] = "normal"
    channels: Annotated[list[Channel] | None, _null_means(list)] = Field(
        default_factory=list, json_schema_extra={"default": []}
    )
    target_count: Count | None = None
    targeting: Targeting | None = None
    content_format: ContentFormat | None = None
    language: Annotated[
        Annotated[str, StringConstraints(pattern=LANGUAGE_PATTERN)] | None,
        _null_means(lambda: "en"),
        Field(description="BCP 47 language tag"),
    ] = "en"
    ack_deadline_s: Annotated[int, Field(gt=0, le=INT_MAX)] | None = Field(
        default=None, description="how soon recipients should have read it, in seconds"
    )
    expires_at: Rfc3339 | None = None
    title: Annotated[str, StringConstraints(max_length=TITLE_MAX)] | None = None


class DeliveryEvent(_Event):
    """Topic `deliveries`: one attempt to deliver to one user on one channel.

    `error_code` and `retryable` mean something on `failed` only, `latency_ms` on `delivered`
    only; elsewhere they are accepted (if well-typed) and reset to their defaults.
    """

    type: DeliveryType
    user_id: Id
    channel: Channel
    region: Region = Field(description="e.g. DE or eu-west")
    attempt: Annotated[Annotated[int, Field(ge=1, le=INT_MAX)] | None, _null_means(lambda: 1)] = 1
    error_code: str | None = None
    retryable: Annotated[bool | None, _null_means(lambda: True)] = True
    latency_ms: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="provider send to device, in milliseconds"
    )

    @model_validator(mode="after")
    def _drop_meaningless(self) -> DeliveryEvent:
        if self.type != "failed":
            self.error_code = None
            self.retryable = True
        if self.type != "delivered":
            self.latency_ms = None
        return self


class AckEvent(_Event):
    """Topic `acks`: what a recipient did."""

    type: AckType
    user_id: Id
    channel: Channel
    region: Region = Field(description="e.g. DE or eu-west")
    action_id: str | None = Field(default=None, description="button or poll option")


MODELS: dict[str, type[_Event]] = {
    BROADCASTS: BroadcastEvent,
    DELIVERIES: DeliveryEvent,
    ACKS: AckEvent,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """Topic → JSON Schema (draft 2020-12) of the events that topic accepts."""
    return {
        topic: {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{topic}.schema.json",
            **model.model_json_schema(),
        }
        for topic, model in MODELS.items()
    }


def export_schemas(out_dir: Path | None) -> str:
    """Write `<topic>.schema.json` into `out_dir` and list the files written, or, without
    a directory, return one JSON document holding all three schemas."""
    schemas = json_schemas()
    if out_dir is None:
        return json.dumps(schemas, indent=2) + "\n"
    written = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for topic, schema in schemas.items():
            path = out_dir / f"{topic}.schema.json"
            path.write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
            written.append(str(path))
    except OSError as e:
        raise HeraldError(f"cannot write schemas to {out_dir}: {e.strerror or e}") from None
    return "\n".join(written)
