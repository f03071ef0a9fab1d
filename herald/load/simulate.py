"""Deterministic, realistic broadcast traffic with known totals (SPEC §2, §4, §6).

`generate(Scenario(...))` plays a few tenants' broadcasts through their lifecycle: fan-out to
recipients on several channels, failures retried with the channel's backoff or dead-lettered,
offline users held as `pending`, acks with read delays of minutes, polls answered. On top of
that come the adversarial parts, each a knob: duplicates (the same bytes again, sometimes under
another Kafka key), out-of-order messages (late by at most `max_delay_s`, well inside the
10-minute grace, so nothing may be dropped) and invalid messages of every kind.

`herald.load.totals.expected_totals` recomputes what Herald must report from these messages.
`run_live` plays the same kind of traffic at a fixed rate with wall-clock event times.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

import orjson

from herald.config import Settings
from herald.errors import HeraldError
from herald.kafka.admin import ensure_topics, herald_topics
from herald.load.invalid import INVALID_KINDS
from herald.load.produce import Batcher, Progress, SimEvent, open_producer, produce_events
from herald.load.scenario import Keying, Scenario
from herald.load.traffic import Item, World, broadcast_items, rfc3339
from herald.model import topics

__all__ = [
    "INVALID_KINDS",
    "Keying",
    "Scenario",
    "SimEvent",
    "generate",
    "produce_events",
    "rfc3339",
    "run_live",
]

# --- adversarial parts -----------------------------------------------------------------------


def _invalid_items(world: World, valid: list[Item]) -> list[Item]:
    """`invalid` messages, cycling through every kind, each a corrupted copy of a valid event
    of the right topic (with a fresh event id, so it can never shadow a valid one)."""
    by_topic: dict[str, list[Item]] = {}
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


def _schedule(world: World, items: list[Item]) -> list[Item]:
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


def _key(world: World, item: Item) -> bytes | None:
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


def _render(item: Item, occurred_ms: int) -> SimEvent:
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


def _plan(sc: Scenario) -> list[Item]:
    world = World(sc, random.Random(sc.seed))
    valid = [item for i in range(sc.broadcasts) for item in broadcast_items(world, i)]
    return _schedule(world, valid + _invalid_items(world, valid))


def generate(sc: Scenario) -> list[SimEvent]:
    """Every message of the scenario, in send order. Same scenario, same bytes."""
    return [_render(item, item.occurred_ms) for item in _plan(sc)]


# --- live traffic ----------------------------------------------------------------------------


def _live_items(sc: Scenario) -> Iterator[Item]:
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
    counts: Counter[str] = Counter()
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
