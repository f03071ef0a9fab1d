"""Deterministic, realistic broadcast traffic with known totals (SPEC §2, §4, §6).

`generate(Scenario(...))` plays a few tenants' broadcasts through their lifecycle: fan-out to
recipients on several channels, failures retried with the channel's backoff or dead-lettered,
offline users held as `pending`, acks with read delays of minutes, polls answered. On top of
that come the adversarial parts, each a knob: duplicates (the same bytes again, sometimes under
another Kafka key), out-of-order messages (late by at most `max_delay_s`, well inside the
10-minute grace, so nothing may be dropped) and invalid messages of every kind.

`herald.totals.expected_totals` recomputes what Herald must report from these messages.
`run_live` plays the same kind of traffic at a fixed rate with wall-clock event times.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import orjson

from herald import topics
from herald.config import DEFAULT_RETRY, Settings
from herald.errors import HeraldError
from herald.kafka_admin import ensure_topics, herald_topics
from herald.produce import Batcher, Progress, SimEvent, open_producer, produce_events

__all__ = [
    "INVALID_KINDS",
    "Keying",
    "Scenario",
    "SimEvent",
    "generate",
    "produce_events",
    "run_live",
]

Keying = Literal["broadcast", "user", "random", "none"]
Counters = Counter[str]

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
GRACE_S = 600
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Scenario:
    """What to simulate. Everything is derived from `seed`: same scenario, same bytes."""

    seed: int = 7
    tenants: int = 3
    broadcasts: int = 20  # in total, spread over the tenants
    users_per_broadcast: int = 200
    regions: tuple[str, ...] = ("DE", "FR", "US", "BR", "JP", "eu-west")
    start_ms: int = 1_795_428_000_000  # 2026-11-23T10:00:00Z
    duration_s: float = 600
    offline_ratio: float = 0.1
    failure_ratio: float = 0.08
    duplicate_ratio: float = 0.02
    out_of_order_ratio: float = 0.05
    # How late an out-of-order or duplicate message may arrive, in event time. It must stay
    # under the grace period minus a window, or expected totals would include dropped events.
    max_delay_s: float = 180
    invalid: int = 0
    keying: Keying = "broadcast"

    def __post_init__(self) -> None:
        ratios = ("offline_ratio", "failure_ratio", "duplicate_ratio", "out_of_order_ratio")
        for name in ratios:
            if not 0 <= getattr(self, name) <= 1:
                raise HeraldError(f"simulate: {name} must be between 0 and 1")
        if self.tenants < 1 or self.broadcasts < 0 or self.users_per_broadcast < 1:
            raise HeraldError("simulate: tenants and users must be ≥ 1, broadcasts ≥ 0")
        if not self.regions or self.duration_s <= 0 or self.invalid < 0:
            raise HeraldError("simulate: regions, a positive duration and invalid ≥ 0 needed")
        if not 0 <= self.max_delay_s <= GRACE_S - 60:
            raise HeraldError(f"simulate: max_delay_s must be within [0, {GRACE_S - 60}]")
        if self.keying not in ("broadcast", "user", "random", "none"):
            raise HeraldError(f"simulate: unknown keying {self.keying!r}")

    @property
    def end_ms(self) -> int:
        return self.start_ms + int(self.duration_s * 1000)


@dataclass(slots=True)
class _Item:
    """One message before rendering: `fields` lack only `occurred_at`."""

    occurred_ms: int
    topic: str
    fields: dict[str, Any]
    offset_min: int = 0
    send_ms: int = 0
    key: bytes | None = None
    original: _Item | None = None  # a duplicate re-sends exactly the original's bytes
    corrupt: Callable[[dict[str, Any]], bytes] | None = None  # makes an invalid message
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


# --- the traffic of one broadcast ------------------------------------------------------------


class _World:
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
    items: list[_Item] = field(default_factory=list)


def _new_broadcast(world: _World, index: int, t0: int) -> _Broadcast:
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
        "targeting": {"mode": "segment", "segment": rng.choice(("beta", "staff", "eu"))}
        if rng.random() < 0.4
        else {"mode": "all"},
        "content_format": "interactive" if poll else rng.choice(("text", "markdown", "html")),
        "language": rng.choice(LANGUAGES),
        "title": f"{'Poll' if poll else 'Announcement'} {index} ({priority})",
    }
    if priority in ("high", "critical"):
        attrs["ack_deadline_s"] = rng.choice((60, 120, 300) if priority == "critical" else (600,))
    if expires_ms is not None:
        attrs["expires_at"] = rfc3339(expires_ms)
    broadcast_id = f"b-{rng.getrandbits(48):012x}"
    return _Broadcast(tenant, broadcast_id, attrs, sent_ms, expires_ms, poll)


def _emit(world: _World, b: _Broadcast, ms: int, topic: str, kind: str, **extra: Any) -> None:
    fields = {
        "event_id": world.event_id(),
        "tenant_id": b.tenant,
        "occurred_at": None,
        "schema_version": 1,
        "type": kind,
        "broadcast_id": b.broadcast_id,
        **extra,
    }
    b.items.append(_Item(ms, topic, fields, world.offset()))


def _lifecycle(world: _World, b: _Broadcast, t0: int) -> bool:
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


def _delivery(world: _World, b: _Broadcast, user: str, region: str, channel: str) -> int:
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
        if rng.random() >= fail_p:
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


def _held(world: _World, b: _Broadcast, t: int, who: dict[str, Any]) -> int:
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


def _acks(world: _World, b: _Broadcast, delivered_ms: int, who: dict[str, Any]) -> None:
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


def _broadcast_items(world: _World, index: int) -> list[_Item]:
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


def _close(world: _World, b: _Broadcast, settled: list[int]) -> None:
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


# --- adversarial parts -----------------------------------------------------------------------


def _dumps_with(**changes: Any) -> Callable[[dict[str, Any]], bytes]:
    return lambda f: orjson.dumps({**f, **changes})


def _dumps_without(name: str) -> Callable[[dict[str, Any]], bytes]:
    return lambda f: orjson.dumps({k: v for k, v in f.items() if k != name})


# Every kind of invalid message of SPEC §2: (name, topic of the base event, corruption).
INVALID_KINDS: tuple[tuple[str, str, Callable[[dict[str, Any]], bytes]], ...] = (
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


def _invalid_items(world: _World, valid: list[_Item]) -> list[_Item]:
    """`invalid` messages, cycling through every kind, each a corrupted copy of a valid event
    of the right topic (with a fresh event id, so it can never shadow a valid one)."""
    by_topic: dict[str, list[_Item]] = {}
    for item in valid:
        by_topic.setdefault(item.topic, []).append(item)
    rng, out = world.rng, []
    for n in range(world.sc.invalid):
        _, topic, corrupt = INVALID_KINDS[n % len(INVALID_KINDS)]
        bases = by_topic.get(topic) or valid
        if not bases:
            raise HeraldError("simulate: invalid messages need at least one valid event")
        base = rng.choice(bases)
        fields = {**base.fields, "event_id": world.event_id()}
        out.append(replace(base, topic=topic, fields=fields, corrupt=corrupt))
    return out


def _schedule(world: _World, items: list[_Item]) -> list[_Item]:
    """Send order: by event time, except out-of-order messages (sent up to `max_delay_s` late)
    and duplicates (re-sent after the original, still within `max_delay_s` of event time).

    A message is then never more than `max_delay_s` behind the highest event time sent before
    it, so it always lands inside the grace period."""
    rng, sc = world.rng, world.sc
    delay_ms = int(sc.max_delay_s * 1000)
    out = []
    for item in sorted(items, key=lambda i: i.occurred_ms):  # stable: ties keep their order
        late = rng.random() < sc.out_of_order_ratio
        lag = rng.randint(min(1_000, delay_ms), delay_ms) if late else 0
        item.send_ms = item.occurred_ms + lag
        out.append(item)
        if item.corrupt is None and rng.random() < sc.duplicate_ratio:
            again = rng.randint(lag, delay_ms)  # never before the original (the sort is stable)
            out.append(replace(item, send_ms=item.occurred_ms + again, original=item))
    out.sort(key=lambda i: i.send_ms)
    for item in out:
        item.key = _key(world, item)
    return out


def _key(world: _World, item: _Item) -> bytes | None:
    keying = world.sc.keying
    if item.original is not None and keying != "none" and world.rng.random() < 0.5:
        return world.rng.getrandbits(64).to_bytes(8, "big")  # a re-send under another key
    if keying == "none":
        return None
    if keying == "random":
        return world.rng.getrandbits(64).to_bytes(8, "big")
    if keying == "user" and "user_id" in item.fields:
        return str(item.fields["user_id"]).encode()
    return str(item.fields["broadcast_id"]).encode()


def _render(item: _Item, occurred_ms: int) -> SimEvent:
    """The exact message bytes; a duplicate repeats its original's."""
    if item.original is not None:
        item.value, item.event = item.original.value, item.original.event
    else:
        fields = {**item.fields, "occurred_at": rfc3339(occurred_ms, item.offset_min)}
        if item.corrupt is None:
            item.value, item.event = orjson.dumps(fields), fields
        else:
            item.value = item.corrupt(fields)
    return SimEvent(item.topic, item.key, item.value, item.event)


def _plan(sc: Scenario) -> list[_Item]:
    world = _World(sc, random.Random(sc.seed))
    valid = [item for i in range(sc.broadcasts) for item in _broadcast_items(world, i)]
    return _schedule(world, valid + _invalid_items(world, valid))


def generate(sc: Scenario) -> list[SimEvent]:
    """Every message of the scenario, in send order. Same scenario, same bytes."""
    return [_render(item, item.occurred_ms) for item in _plan(sc)]


# --- live traffic ----------------------------------------------------------------------------


def _live_items(sc: Scenario) -> Iterator[_Item]:
    """An endless stream: successive scenarios (seed, seed+1, ...) played back to back."""
    round_ = 0
    while True:
        yield from _plan(replace(sc, seed=sc.seed + round_))
        round_ += 1


async def run_live(
    settings: Settings,
    rate: float,
    duration_s: float,
    progress: Progress | None = None,
    scenario: Scenario | None = None,
) -> dict[str, int]:
    """Produce realistic traffic at `rate` messages/s for `duration_s`; returns counts per topic.

    Simulated time is compressed onto the wall clock: messages go out in the scenario's send
    order, each stamped `occurred_at = now`, except that a late (out-of-order) message keeps
    its lateness and a duplicate its original's bytes. Tenants, ratios, keying and `invalid`
    (per simulated scenario) come from `scenario`. Creates the input topics if missing."""
    if rate <= 0 or duration_s <= 0:
        raise HeraldError("simulate: --rate and --duration must be positive")
    sc = scenario or Scenario(invalid=20)
    specs = herald_topics(settings)
    await ensure_topics(settings, {t: specs[t] for t in topics.INPUT_TOPICS})
    counts: Counters = Counter()
    loop = asyncio.get_running_loop()
    items = _live_items(sc)
    first = next(items)  # plans the first scenario before the clock starts
    async with open_producer(settings) as producer:
        batcher = Batcher(producer)
        started = last_report = loop.time()
        for item in itertools.chain([first], items):
            now = loop.time()
            if now - started >= duration_s:
                break
            ahead = started + counts.total() / rate - now
            if ahead > 0.005:  # sleeping per message would cost more than sending it
                await batcher.send_open()  # nothing waits in a batch while we pause
                await asyncio.sleep(ahead)
            lateness = item.send_ms - item.occurred_ms
            msg = _render(item, int(time.time() * 1000) - lateness)
            await batcher.add(msg)
            counts[msg.topic] += 1
            if progress and now - last_report >= 1.0:
                last_report = now
                progress(
                    f"{counts.total()} messages sent ({counts.total() / (now - started):.0f}/s)"
                )
        await batcher.flush()
    return dict(counts)
