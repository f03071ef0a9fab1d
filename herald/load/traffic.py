"""The traffic of one broadcast, planned as items (messages before rendering): the lifecycle
(created, scheduled, updated, sent or cancelled, completed or expired), fan-out to recipients
on several channels, failures retried with the channel's backoff or dead-lettered, offline
users held as `pending`, acks with read delays of minutes, polls answered.

`herald.load.simulate` schedules these items, adds the adversarial parts and renders the bytes.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from herald.config import DEFAULT_RETRY
from herald.load.invalid import Corruption
from herald.load.scenario import Scenario
from herald.model import topics

TENANT_NAMES = (
    "acme", "globex", "initech", "umbrella", "hooli",
    "stark", "wayne", "wonka", "tyrell", "cyberdyne",
)  # fmt: skip
CHANNEL_SETS = (
    ("in_app",), ("push", "in_app"), ("push", "email"), ("sse", "in_app"),
    ("email",), ("push", "sms"), ("sse", "push", "email"),
)  # fmt: skip
# Median provider-to-device latency per channel, ms (lognormal around it).
LATENCY_MEDIAN_MS = {"sse": 40, "in_app": 60, "push": 350, "email": 2500, "sms": 1800}
RETRYABLE_ERRORS = ("timeout", "rate_limited", "provider_unavailable", "connection_reset")
PERMANENT_ERRORS = ("invalid_token", "unsubscribed", "bounced", "blocked")
POLL_OPTIONS = ("yes", "no", "maybe")
LANGUAGES = ("en", "en-US", "de", "fr", "pt-BR", "ja")
OFFSETS_MIN = (60, 330, -180)  # a few producers write local time with an offset
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class Item:
    """One message before rendering: `fields` lack only `occurred_at`."""

    occurred_ms: int
    topic: str
    fields: dict[str, Any]
    offset_min: int = 0
    send_ms: int = 0
    key: bytes | None = None
    original: Item | None = None  # a duplicate re-sends exactly the original's bytes
    corrupt: Corruption | None = None  # makes an invalid message
    value: bytes = b""
    event: dict[str, Any] | None = None


def rfc3339(ms: int, offset_min: int = 0) -> str:
    """`2026-11-23T10:00:00.123Z`, or with `+01:00` style offset when offset_min != 0."""
    tz = UTC if offset_min == 0 else timezone(timedelta(minutes=offset_min))
    local = (_EPOCH + timedelta(milliseconds=ms)).astimezone(tz)
    text = f"{local:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}"
    if offset_min == 0:
        return text + "Z"
    sign, minutes = ("+" if offset_min > 0 else "-"), abs(offset_min)
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


class World:
    """Tenants, their user pools (user → home region) and unique ids, all from one rng."""

    def __init__(self, sc: Scenario, rng: random.Random) -> None:
        self.sc = sc
        self.rng = rng
        self.tenants = [
            TENANT_NAMES[i] if i < len(TENANT_NAMES) else f"tenant-{i}" for i in range(sc.tenants)
        ]
        weights = [len(sc.regions) - i for i in range(len(sc.regions))]  # first regions busier
        pool = max(2 * sc.users_per_broadcast, 10)
        self.users = {
            t: [(f"u{i:06d}", rng.choices(sc.regions, weights)[0]) for i in range(pool)]
            for t in self.tenants
        }

    def event_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def offset(self) -> int:
        return self.rng.choice(OFFSETS_MIN) if self.rng.random() < 0.05 else 0


@dataclass
class _Broadcast:
    tenant: str
    broadcast_id: str
    attrs: dict[str, Any]
    sent_ms: int
    expires_ms: int | None
    poll: bool
    items: list[Item] = field(default_factory=list)


FORMATS = ("text", "markdown", "html", "media")


def _targeting(roll: float, rng: random.Random) -> dict[str, Any]:
    """Every mode of SPEC §2: a segment, a list of users, or everyone."""
    if roll < 0.4:
        return {"mode": "segment", "segment": rng.choice(("beta", "staff", "eu"))}
    if roll < 0.55:
        return {"mode": "users", "user_ids": [f"u{rng.randrange(1000):06d}" for _ in range(3)]}
    return {"mode": "all"}


def _new_broadcast(world: World, index: int, t0: int) -> _Broadcast:
    rng = world.rng
    tenant = world.tenants[index % len(world.tenants)]
    priority = rng.choices(("low", "normal", "high", "critical"), (15, 60, 18, 7))[0]
    poll = rng.random() < 0.25
    channels = ("sms", "push") if priority == "critical" else rng.choice(CHANNEL_SETS)
    sent_ms = t0 + rng.randint(5_000, 45_000)
    expires_ms = sent_ms + rng.randint(120_000, 360_000) if rng.random() < 0.3 else None
    attrs: dict[str, Any] = {
        "priority": priority,
        "channels": list(channels),
        "target_count": world.sc.users_per_broadcast,
        "targeting": _targeting(rng.random(), rng),
        "content_format": "interactive" if poll else rng.choice(FORMATS),
        "language": rng.choice(LANGUAGES),
        "title": f"{'Poll' if poll else 'Announcement'} {index} ({priority})",
    }
    if priority in ("high", "critical"):
        attrs["ack_deadline_s"] = rng.choice((60, 120, 300) if priority == "critical" else (600,))
    if expires_ms is not None:
        attrs["expires_at"] = rfc3339(expires_ms)
    broadcast_id = f"b-{rng.getrandbits(48):012x}"
    return _Broadcast(tenant, broadcast_id, attrs, sent_ms, expires_ms, poll)


def _emit(world: World, b: _Broadcast, ms: int, topic: str, kind: str, **extra: Any) -> None:
    fields = {
        "event_id": world.event_id(),
        "tenant_id": b.tenant,
        "occurred_at": None,
        "schema_version": 1,
        "type": kind,
        "broadcast_id": b.broadcast_id,
        **extra,
    }
    b.items.append(Item(ms, topic, fields, world.offset()))


def _lifecycle(world: World, b: _Broadcast, t0: int) -> bool:
    """created → scheduled? → updated? → sent, or cancelled. True if it was sent."""
    rng = world.rng
    _emit(world, b, t0, topics.BROADCASTS, "created", **b.attrs)
    if rng.random() < 0.5:
        _emit(world, b, t0 + rng.randint(500, 4_000), topics.BROADCASTS, "scheduled", **b.attrs)
    if rng.random() < 0.15:
        b.attrs["title"] += " (edited)"
        _emit(world, b, t0 + rng.randint(4_000, 5_000), topics.BROADCASTS, "updated", **b.attrs)
    if rng.random() < 0.05:
        _emit(world, b, b.sent_ms, topics.BROADCASTS, "cancelled", **b.attrs)
        return False
    _emit(world, b, b.sent_ms, topics.BROADCASTS, "sent", **b.attrs)
    return True


def _delivery(world: World, b: _Broadcast, user: str, region: str, channel: str) -> int:
    """One recipient on one channel; returns when it was settled (delivered, expired or
    dead-lettered)."""
    rng, sc = world.rng, world.sc
    who = {"user_id": user, "channel": channel, "region": region}
    fanout_ms = min(30_000, 10 * sc.users_per_broadcast)
    t = b.sent_ms + rng.randint(0, fanout_ms)
    _emit(world, b, t, topics.DELIVERIES, "queued", **who, attempt=1)
    if rng.random() < sc.offline_ratio:
        return _held(world, b, t, who)
    policy = DEFAULT_RETRY[channel]
    fail_p, attempt = sc.failure_ratio, 0
    while True:
        attempt += 1
        t += rng.randint(20, 1_000)
        _emit(world, b, t, topics.DELIVERIES, "attempted", **who, attempt=attempt)
        if rng.random() >= sc.failure_ratio_at(region, t, fail_p):
            latency = round(rng.lognormvariate(0, 0.6) * LATENCY_MEDIAN_MS[channel], 1)
            t += int(latency)
            _emit(
                world,
                b,
                t,
                topics.DELIVERIES,
                "delivered",
                **who,
                attempt=attempt,
                latency_ms=latency,
            )
            _acks(world, b, t, who)
            return t
        retryable = rng.random() < 0.8
        error = rng.choice(RETRYABLE_ERRORS if retryable else PERMANENT_ERRORS)
        t += rng.randint(50, 3_000)
        _emit(
            world,
            b,
            t,
            topics.DELIVERIES,
            "failed",
            **who,
            attempt=attempt,
            error_code=error,
            retryable=retryable,
        )
        if not retryable or attempt >= policy.max_attempts:
            return t  # dead-lettered
        backoff_s = min(policy.cap_s, policy.base_s * 2 ** (attempt - 1))
        t += int(rng.uniform(0.5, 1.0) * backoff_s * 1000)  # equal jitter, as SPEC §3
        fail_p = 0.5  # a provider that failed once is likely to fail again


def _held(world: World, b: _Broadcast, t: int, who: dict[str, Any]) -> int:
    """An offline user: pending, then delivered when back online or expired with the message."""
    rng = world.rng
    t += rng.randint(20, 500)
    _emit(world, b, t, topics.DELIVERIES, "pending", **who, attempt=1)
    back = t + int(rng.lognormvariate(0, 0.8) * 90_000)
    if b.expires_ms is not None and back > b.expires_ms:
        _emit(world, b, b.expires_ms, topics.DELIVERIES, "expired", **who, attempt=1)
        return b.expires_ms
    latency = round(rng.lognormvariate(0, 0.6) * LATENCY_MEDIAN_MS[who["channel"]], 1)
    _emit(world, b, back, topics.DELIVERIES, "delivered", **who, attempt=1, latency_ms=latency)
    _acks(world, b, back, who)
    return back


def _acks(world: World, b: _Broadcast, delivered_ms: int, who: dict[str, Any]) -> None:
    """received → read (minutes later) → clicked | dismissed | responded (polls)."""
    rng = world.rng
    if rng.random() < (0.6 if who["channel"] == "email" else 0.95):
        _emit(world, b, delivered_ms + rng.randint(50, 2_000), topics.ACKS, "received", **who)
    if rng.random() >= (0.85 if b.attrs["priority"] == "critical" else 0.65):
        return
    read = delivered_ms + int(rng.lognormvariate(0, 1.0) * 120_000)
    _emit(world, b, read, topics.ACKS, "read", **who)
    after = read + int(rng.lognormvariate(0, 0.7) * 15_000)
    roll = rng.random()
    if b.poll and roll < 0.6:
        _emit(world, b, after, topics.ACKS, "responded", **who, action_id=rng.choice(POLL_OPTIONS))
    elif not b.poll and roll < 0.25:
        _emit(world, b, after, topics.ACKS, "clicked", **who, action_id="open")
    elif roll < 0.85:
        _emit(world, b, after, topics.ACKS, "dismissed", **who)


def broadcast_items(world: World, index: int) -> list[Item]:
    sc, rng = world.sc, world.rng
    t0 = sc.start_ms + int(rng.uniform(0, 0.25) * sc.duration_s * 1000)
    b = _new_broadcast(world, index, t0)
    if _lifecycle(world, b, t0):
        settled = []
        for user, region in rng.sample(world.users[b.tenant], sc.users_per_broadcast):
            for channel in b.attrs["channels"]:
                settled.append(_delivery(world, b, user, region, channel))
        _close(world, b, settled)
    return [item for item in b.items if item.occurred_ms <= sc.end_ms]


def _close(world: World, b: _Broadcast, settled: list[int]) -> None:
    """completed once every delivery settled, unless the broadcast expired first."""
    done = max(settled, default=b.sent_ms)
    if b.expires_ms is None or done < b.expires_ms:
        _emit(
            world,
            b,
            done + world.rng.randint(1_000, 10_000),
            topics.BROADCASTS,
            "completed",
            **b.attrs,
        )
    else:
        _emit(world, b, b.expires_ms, topics.BROADCASTS, "expired", **b.attrs)
