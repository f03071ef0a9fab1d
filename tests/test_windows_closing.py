"""Windows that close during the test (SPEC §4), end to end on a real broker and `herald run`.

Grace is 2 minutes over 10 minutes of event time, so windows close while the test runs:
- partition 0 is replayed first, far ahead of the others: the table watermark is the minimum
  over partitions, so none of the slow partitions' events may be dropped (with a maximum,
  the slow partitions' first eight minutes would all be late);
- partition 3 carries only the first 150 s: once it is idle it must stop holding the watermark
  back, or no window could become final;
- events sent after their window closed are counted in `late_dropped`, and the final rows
  stay as they were.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from herald.load.simulate import Scenario, SimEvent, generate
from herald.load.totals import Totals, epoch_ms, expected_totals, instant, table_watermark
from herald.model import topics
from tests.e2e import assert_exact, by_minute, expected_minutes, produce
from tests.harness import Herald, wait_for

pytestmark = pytest.mark.slow
GRACE_S = 120
IDLE_S = 30
SCENARIO = Scenario(seed=17, broadcasts=12, max_delay_s=60, keying="random", invalid=10)
STOPPED, STOPS_AT_MS = 3, SCENARIO.start_ms + 150_000


def ts_of(msg: SimEvent) -> int:
    assert msg.event is not None
    return epoch_ms(instant(msg.event["occurred_at"]))


def partition(msg: SimEvent) -> int:
    """By content, except that partition 3 gets nothing after its first 150 s."""
    p = zlib.crc32(msg.value) % 4
    if p == STOPPED and msg.event is not None and ts_of(msg) >= STOPS_AT_MS:
        return zlib.crc32(msg.value) % 3
    return p


def late_copies(messages: list[SimEvent]) -> list[SimEvent]:
    """New deliveries (fresh ids) in minutes 4 and 5: closed once every partition is idle."""
    lo, hi = SCENARIO.start_ms + 200_000, SCENARIO.start_ms + 300_000
    late: dict[str, SimEvent] = {}  # by id: a simulated duplicate is copied once
    for msg in messages:
        if msg.topic == topics.DELIVERIES and msg.event and lo <= ts_of(msg) < hi:
            event = {**msg.event, "event_id": msg.event["event_id"] + "-late"}
            late.setdefault(event["event_id"], SimEvent(msg.topic, msg.key, orjson.dumps(event),
                                                        event))  # fmt: skip
    return list(late.values())[:300]


def final_flags(herald: Herald) -> dict[tuple[str, str, str], int]:
    rows = herald.query(
        "SELECT tenant_id, broadcast_id, toString(window_start) AS minute, is_final"
        " FROM broadcast_stats_1m FINAL"
    )
    return {(r["tenant_id"], r["broadcast_id"], r["minute"]): int(r["is_final"]) for r in rows}


def expected_final(totals: Totals, watermark_ms: int) -> dict[tuple[str, str, str], int]:
    return {key: int(totals.is_final(minute, watermark_ms))
            for key, minute in _minutes(totals).items()}  # fmt: skip


def _minutes(totals: Totals) -> dict[tuple[str, str, str], datetime]:
    return {(t, b, m.strftime("%Y-%m-%d %H:%M:%S")): m for t, b, m in totals.by_broadcast_minute}


def late_dropped(herald: Herald) -> int:
    rows = herald.query("SELECT sum(late_dropped) AS n FROM pipeline_stats_1m FINAL")
    return int(rows[0]["n"] or 0)


def test_windows_close_on_the_min_watermark_idle_partitions_and_late_drops(
    broker: str, tmp_path: Path
) -> None:
    main = generate(SCENARIO)
    on_time = expected_totals(main, grace_s=GRACE_S)
    assert on_time.duplicates > 0
    assert {partition(m) for m in main if m.event and ts_of(m) >= STOPS_AT_MS} == {0, 1, 2}
    produce(broker, [m for m in main if partition(m) == 0], partition)
    herald = Herald(tmp_path / "h", broker, grace_s=GRACE_S, idle_partition_s=IDLE_S).start()
    try:
        wait_for(lambda: herald.query("SELECT count() AS n FROM events_raw")[0]["n"] > 0,
                 60, "partition 0 being processed")  # fmt: skip
        produce(broker, [m for m in main if partition(m) != 0], partition)
        assert_exact(herald, on_time)
        assert late_dropped(herald) == 0

        # Every partition is caught up: after IDLE_S each is idle, and the watermark is the
        # highest event time; partition 3 alone would hold it at 150 s.
        watermark = table_watermark(main, partition, idle=range(4))
        assert watermark - table_watermark(main, partition) > 7 * 60_000
        final = expected_final(on_time, watermark)
        assert 0 < sum(final.values()) < len(final)
        wait_for(lambda: final_flags(herald) == final, IDLE_S + 60, "windows final")

        late = late_copies(main)
        produce(broker, late, lambda m: zlib.crc32(m.value) % 3)
        totals = expected_totals(main + late, grace_s=GRACE_S, watermarks={len(main): watermark})
        assert totals.late_dropped == len(late) > 0
        wait_for(lambda: late_dropped(herald) == totals.late_dropped, 60, "late drops counted")
        assert_exact(herald, totals)
        assert by_minute(herald) == expected_minutes(on_time)  # final rows unchanged
        assert final_flags(herald) == final
    finally:
        herald.stop()
