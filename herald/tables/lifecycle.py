"""A broadcast's lifecycle row (ClickHouse table `broadcasts`) built from its events.

Events may arrive in any order (replays, several topics): the status is that of the latest
event by event time, and each milestone timestamp is kept per event type, so the result does
not depend on arrival order.
"""

from __future__ import annotations

from typing import Any

MILESTONES = {
    "created": "created_at",
    "scheduled": "scheduled_at",
    "sent": "sent_at",
    "completed": "completed_at",
    "cancelled": "cancelled_at",
}
# Descriptive fields that `created` and `updated` events may set.
DESCRIPTIVE = ("priority", "channels", "target_count", "content_format", "language",
               "ack_deadline_s", "title")  # fmt: skip


def new(tenant_id: str, broadcast_id: str) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "broadcast_id": broadcast_id,
        "status": "",
        "status_ts": -1,
        "fields_rank": [-1, -1],
        "priority": "normal",
        "channels": [],
        "target_count": 0,
        "targeting_mode": "",
        "segment": "",
        "content_format": "",
        "language": "en",
        "ack_deadline_s": None,
        "expires_at": None,
        "title": "",
        **dict.fromkeys(MILESTONES.values()),
    }


def apply(state: dict[str, Any], event: dict[str, Any]) -> None:
    """Fold one `broadcasts` event into the lifecycle state."""
    ts = event["ts"]
    if ts >= state["status_ts"]:
        state["status"], state["status_ts"] = event["type"], ts
    milestone = MILESTONES.get(event["type"])
    if milestone and (state[milestone] is None or ts < state[milestone]):
        state[milestone] = ts  # the first time it happened
    # Defaults are applied at validation, so a bare `sent` event says "priority normal" too:
    # descriptive fields come from `created`/`updated` events, others only fill in the gaps.
    rank = [1 if event["type"] in ("created", "updated") else 0, ts]
    if rank >= state["fields_rank"]:
        state["fields_rank"] = rank
        _set_fields(state, event)


def _set_fields(state: dict[str, Any], event: dict[str, Any]) -> None:
    for name in DESCRIPTIVE:
        value = event.get(name)
        if value is not None:
            state[name] = value
    if event.get("expires_ts") is not None:
        state["expires_at"] = event["expires_ts"]
    targeting = event.get("targeting")
    if targeting:
        state["targeting_mode"] = targeting.get("mode", "")
        state["segment"] = targeting.get("segment") or ""


def to_row(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in ("status_ts", "fields_rank")}
