"""Exact distinct recipients per broadcast and channel (SPEC §6), on a real RocksDB store: users
on several channels, repeats, duplicates, late events, restarts, expiry, and a property test
against a set-based oracle over random streams cut into random batches."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herald.config import DEFAULT_RETRY
from herald.streams.shard import Shard
from herald.tables import aggregates
from herald.tables.reach import broadcast_prefix
from herald.tables.store import Change, ShardStore
from tests.test_shard import A0, D0, GRACE_S, MIN, T0, Feed, ack, delivery, msg


def reach(feed: Feed) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """What the snapshot would publish, summed over windows: recipients by kind for broadcast
    b1, and by (kind, channel)."""
    total: Counter[str] = Counter()
    by_channel: Counter[tuple[str, str]] = Counter()
    for key, agg in feed.shard.aggs.items():
        if key[0] == "b" and key[2] == "b1":
            row = aggregates.to_row(agg, by_channel=True)
            for kind in ("delivered", "read"):
                total[kind] += row[f"recipients_{kind}"]
                for channel, n in row[f"channel_recipients_{kind}"].items():
                    by_channel[(kind, channel)] += n
    return +total, +by_channel


def test_a_user_counts_once_per_broadcast_and_once_per_channel(tmp_path: Path) -> None:
    feed = Feed(tmp_path / "s")
    feed.batch(msg(D0, T0, [
        delivery("delivered", T0, user_id="a", channel="push"),
        delivery("delivered", T0, user_id="a", channel="email"),
        delivery("delivered", T0 + MIN, user_id="a", channel="push", attempt=2),  # again
        delivery("delivered", T0, user_id="b", channel="push"),
        delivery("failed", T0, user_id="c", channel="push"),  # not reached
    ]))  # fmt: skip
    feed.batch(msg(A0, T0 + MIN, [ack("read", T0 + MIN, user_id="a", channel="email"),
                                  ack("read", T0 + MIN, user_id="a", channel="push")]))  # fmt: skip
    total, by_channel = reach(feed)
    assert total == Counter({"delivered": 2, "read": 1})
    assert by_channel == Counter({("delivered", "push"): 2, ("delivered", "email"): 1,
                                  ("read", "email"): 1, ("read", "push"): 1})  # fmt: skip
    # The region x channel windows count a user once per channel: push has a and b.
    region = Counter()
    for key, agg in feed.shard.aggs.items():
        if key[0] == "r":
            region[key[3]] += agg[aggregates.RECIPIENTS["delivered"]]
    assert region == Counter({"push": 2, "email": 1})


def test_duplicates_and_late_events_reach_no_one(tmp_path: Path) -> None:
    feed = Feed(tmp_path / "s")
    first = delivery("delivered", T0, user_id="a", event_id="same")
    feed.batch(msg(D0, T0, [first]), msg(D0, T0, [first]))
    late = T0 - (GRACE_S + 120) * 1000  # its window closed before it came
    feed.batch(msg(D0, T0, [delivery("delivered", late, user_id="z")]))
    assert reach(feed)[0] == Counter({"delivered": 1})
    # z was not marked: on time later, it counts.
    feed.batch(msg(D0, T0, [delivery("delivered", T0, user_id="z")]))
    assert reach(feed)[0] == Counter({"delivered": 2})


def test_the_masks_come_from_the_store_after_a_restart(tmp_path: Path) -> None:
    feed = Feed(tmp_path / "s")
    feed.batch(msg(D0, T0, [delivery("delivered", T0, user_id="a")]))
    feed.restart()
    feed.batch(msg(D0, T0, [delivery("delivered", T0 + 1, user_id="a", attempt=2),
                            delivery("delivered", T0 + 1, user_id="b")]))  # fmt: skip
    assert reach(feed)[0] == Counter({"delivered": 2})
    # Memory holds no mask between batches: the audience lives in RocksDB.
    assert feed.shard.reach is not None and not feed.shard.reach._masks


def test_a_broadcast_quiet_for_the_horizon_is_forgotten(tmp_path: Path) -> None:
    store = ShardStore(tmp_path / "s")
    shard = Shard(0, store, GRACE_S, DEFAULT_RETRY, reach_horizon_s=3600)
    change = shard.apply([(0, msg(D0, T0, [delivery("delivered", T0, user_id="a"),
                                          delivery("delivered", T0, user_id="b",
                                                   broadcast="b2")]))])  # fmt: skip
    store.write(change)
    later = T0 + 2 * 3600_000  # b2 goes on, b1 is quiet
    store.write(shard.apply([(1, msg(D0, later, [delivery("delivered", later, user_id="c",
                                                          broadcast="b2")]))]))  # fmt: skip
    assert _masks(store, "b1") == []
    assert [k.endswith(b"b") or k.endswith(b"c") for k in _masks(store, "b2")] == [True, True]
    assert shard.reach is not None and list(shard.reach.last) == [broadcast_prefix("t1", "b2")]


def test_a_window_stored_before_reach_existed_is_completed(tmp_path: Path) -> None:
    store = ShardStore(tmp_path / "s")
    old = aggregates.new()[: aggregates.TIME_TO_READ + 1]
    old[aggregates.INDEX["delivered"]] = 3
    change = Change()
    change.put(b"a" + orjson.dumps(["b", "t1", "b1", T0]), old)
    store.write(change)
    shard = Shard(0, store, GRACE_S, DEFAULT_RETRY)
    shard.apply([(0, msg(D0, T0, [delivery("delivered", T0, user_id="a")]))])
    row = aggregates.to_row(shard.aggs[("b", "t1", "b1", T0)], by_channel=True)
    assert (row["delivered"], row["recipients_delivered"]) == (4, 1)
    assert row["channel_recipients_delivered"] == {"push": 1}


def _masks(store: ShardStore, broadcast: str) -> list[bytes]:
    prefix = broadcast_prefix("t1", broadcast)
    return [k for k, _ in store.scan(prefix)]


EVENT = st.tuples(st.sampled_from(["delivered", "read", "failed", "pending"]),
                  st.sampled_from(["u1", "u2", "u3", "u4"]),
                  st.sampled_from(["push", "email", "sms"]),
                  st.integers(0, 5))  # fmt: skip


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(events=st.lists(EVENT, max_size=40), cuts=st.lists(st.integers(0, 40), max_size=4),
       restart_at=st.integers(0, 4))  # fmt: skip
def test_recipients_equal_distinct_users(
    tmp_path_factory: Any, events: list[tuple[str, str, str, int]], cuts: list[int],
    restart_at: int,
) -> None:  # fmt: skip
    """Any stream, any batching, a restart anywhere: the sums are the distinct users."""
    feed = Feed(tmp_path_factory.mktemp("p") / "s")
    made = [(delivery if kind != "read" else ack)(kind, T0 + minute * MIN, user_id=user,
                                                   channel=channel)
            for kind, user, channel, minute in events]  # fmt: skip
    bounds = sorted({0, len(made), *(c for c in cuts if c <= len(made))})
    for i, (start, end) in enumerate(itertools.pairwise(bounds)):
        if i == restart_at:
            feed.restart()
        part = made[start:end]
        feed.batch(msg(D0, T0, [e for e in part if e.topic != "acks"]),
                   msg(A0, T0, [e for e in part if e.topic == "acks"]))  # fmt: skip
    want_total = Counter({kind: len({u for k, u, _, _ in events if k == kind})
                          for kind in ("delivered", "read")})  # fmt: skip
    want_channel = Counter({(kind, channel): len({u for k, u, c, _ in events
                                                  if k == kind and c == channel})
                            for kind in ("delivered", "read")
                            for channel in ("push", "email", "sms")})  # fmt: skip
    assert reach(feed) == (+want_total, +want_channel)
