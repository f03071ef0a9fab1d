"""The benchmark baselines consume exactly the messages asked for from a real topic."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from herald.bench.baselines import BaselineResult, run_baseline
from herald.config import Settings
from herald.errors import HeraldError
from herald.kafka.admin import TopicSpec, ensure_topics
from herald.load.produce import SimEvent, produce_events
from herald.load.simulate import Scenario, generate

MESSAGES = 3_000


@pytest.fixture(scope="module")
def topic(kafka_bootstrap: str) -> str:
    """A topic of MESSAGES simulated messages, a few invalid ones among the first."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    events = generate(Scenario(broadcasts=4, users_per_broadcast=150, invalid=10))
    invalid = [e for e in events if e.event is None]
    ordered = invalid + [e for e in events if e.event is not None]
    messages = [SimEvent(name, e.key, e.value, e.event) for e in ordered[:MESSAGES]]
    assert len(messages) == MESSAGES

    async def fill() -> None:
        settings = Settings(kafka_bootstrap=kafka_bootstrap)
        await ensure_topics(settings, {name: TopicSpec(4)})
        await produce_events(settings, messages)

    asyncio.run(fill())
    return name


def assert_measured(result: BaselineResult, name: str, events: int) -> None:
    assert (result.name, result.events, result.skipped) == (name, events, None)
    assert result.seconds > 0 and result.cpu_s > 0
    assert result.events_per_s == pytest.approx(events / result.seconds)


def test_raw_consumes_exactly_n(kafka_bootstrap: str, topic: str) -> None:
    assert_measured(run_baseline("raw", kafka_bootstrap, topic, MESSAGES, 60), "raw", MESSAGES)
    assert_measured(run_baseline("raw", kafka_bootstrap, topic, 1_000, 60), "raw", 1_000)


def test_raw_with_a_short_topic_stops_at_the_budget(kafka_bootstrap: str, topic: str) -> None:
    started = time.monotonic()
    result = run_baseline("raw", kafka_bootstrap, topic, MESSAGES + 500, 2)
    assert time.monotonic() - started >= 2
    # The rate is over the messages there were, not over the time spent waiting for more.
    assert_measured(result, "raw", MESSAGES)
    assert result.seconds < 2


def test_faust_naive_on_a_sample(kafka_bootstrap: str, topic: str) -> None:
    result = run_baseline("faust_naive", kafka_bootstrap, topic, 300, 60)
    assert_measured(result, "faust_naive", 300)


def test_quix_on_a_sample(kafka_bootstrap: str, topic: str) -> None:
    result = run_baseline("quix", kafka_bootstrap, topic, 300, 60)
    if result.skipped:
        pytest.skip(result.skipped)
    assert_measured(result, "quix", 300)


def test_bad_requests_fail_in_one_line(kafka_bootstrap: str) -> None:
    with pytest.raises(HeraldError, match="does not exist"):
        run_baseline("raw", kafka_bootstrap, f"missing-{uuid.uuid4().hex[:8]}", 10, 5)
    with pytest.raises(HeraldError, match="unknown baseline"):
        run_baseline("flink", kafka_bootstrap, "t", 10, 5)
