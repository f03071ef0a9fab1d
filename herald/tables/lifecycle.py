"""A broadcast's lifecycle row (ClickHouse table `broadcasts`) built from its events.

Events may arrive in any order (replays, several topics): the status is that of the latest
event by event time, and each milestone timestamp is kept per event type, so the result does
not depend on arrival order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from herald.model.event import Event

MILESTONES = {
    "created": "created_at",
    "scheduled": "scheduled_at",
    "sent": "sent_at",
    "completed": "completed_at",
    "cancelled": "cancelled_at",
}
# Ties in event time go to the later stage.
STAGES = {"created": 0, "scheduled": 1, "updated": 2, "sent": 3, "expired": 4, "completed": 5,
          "cancelled": 6}  # fmt: skip
# Descriptive fields that `created` and `updated` events may set.
DESCRIPTIVE = ("priority", "channels", "target_count", "content_format", "language",
               "ack_deadline_s", "title")  # fmt: skip


def new(tenant_id: str, broadcast_id: str) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "broadcast_id": broadcast_id,
        "status": "",
        "status_rank": [-1, -1],
        "field_ranks": {},
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


def apply(state: dict[str, Any], event: Event) -> None:
    """Fold one `broadcasts` event into the lifecycle state, in any arrival order."""
    ts = event.ts
    # Equal event times are broken by lifecycle stage, not by arrival.
    stage = [ts, STAGES[event.type]]
    if stage >= state["status_rank"]:
        state["status"], state["status_rank"] = event.type, stage
    milestone = MILESTONES.get(event.type)
    if milestone and (state[milestone] is None or ts < state[milestone]):
        state[milestone] = ts  # the first time it happened
    # Each field is the latest value given, by event time; `created`/`updated` outrank the
    # others, which describe a broadcast only in passing.
    rank = [1 if event.type in ("created", "updated") else 0, ts]
    ranks = state["field_ranks"]
    for name, value in _given(event).items():
        if rank >= ranks.get(name, [-1, -1]):
            state[name], ranks[name] = value, rank


def _given(event: Event) -> dict[str, Any]:
    """The descriptive fields this event carries a value for."""
    fields = event.payload or {}
    given = {name: fields.get(name) for name in DESCRIPTIVE}
    given["expires_at"] = fields.get("expires_ts")
    targeting = fields.get("targeting")
    if targeting:
        given["targeting_mode"] = targeting.get("mode", "")
        given["segment"] = targeting.get("segment") or ""
    return {k: v for k, v in given.items() if v is not None and v != []}


def to_row(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in ("status_rank", "field_ranks")}
