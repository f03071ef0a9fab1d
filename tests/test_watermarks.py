"""Per-partition watermarks and the table watermark: min over feeding partitions (SPEC §4)."""

from __future__ import annotations

from herald.tables.watermarks import Watermarks


def table() -> Watermarks:
    return Watermarks(("deliveries", "acks"))


def test_unknown_until_a_feeding_partition_reports() -> None:
    wm = table()
    assert wm.current() is None
    wm.observe("broadcasts/0", 5_000)
    wm.advance("broadcasts/1", 6_000)
    assert wm.current() is None


def test_table_watermark_is_the_minimum_over_feeding_partitions() -> None:
    wm = table()
    wm.observe("deliveries/0", 9_000)
    wm.observe("deliveries/1", 4_000)
    wm.advance("acks/0", 7_000)
    assert wm.current() == 4_000
    wm.advance("deliveries/1", 8_000)
    assert wm.current() == 7_000


def test_broadcasts_partitions_do_not_hold_the_watermark_back() -> None:
    wm = table()
    wm.observe("deliveries/0", 9_000)
    wm.observe("broadcasts/0", 1_000)
    assert wm.current() == 9_000


def test_only_whole_topic_names_feed() -> None:
    """`deliveries_archive/0` is not a partition of `deliveries`."""
    wm = table()
    wm.observe("deliveries/0", 9_000)
    wm.observe("deliveries_archive/0", 1_000)
    assert wm.current() == 9_000


def test_idle_partitions_are_excluded() -> None:
    wm = table()
    wm.observe("deliveries/0", 9_000)
    wm.observe("deliveries/1", 2_000, idle=True)
    assert wm.current() == 9_000


def test_an_idle_partition_with_new_data_holds_the_watermark_again() -> None:
    wm = table()
    wm.observe("deliveries/0", 9_000)
    wm.observe("deliveries/1", 2_000, idle=True)
    wm.advance("deliveries/1", 3_000)
    assert wm.current() == 3_000
    wm.observe("deliveries/1", 3_000, idle=True)
    wm.observe("deliveries/1", 3_000)  # a packed message: active again
    assert wm.current() == 3_000


def test_all_idle_gives_the_highest_watermark() -> None:
    wm = table()
    wm.observe("deliveries/0", 9_000, idle=True)
    wm.observe("acks/3", 12_000, idle=True)
    wm.observe("deliveries/1", 2_000, idle=True)
    assert wm.current() == 12_000


def test_a_partition_watermark_never_regresses() -> None:
    wm = table()
    wm.observe("deliveries/0", 9_000)
    wm.observe("deliveries/0", 4_000)  # e.g. ingest restarted and starts from 0 again
    assert wm.sources["deliveries/0"][0] == 9_000
    wm.advance("deliveries/0", 5_000)  # an out-of-order event
    assert wm.sources["deliveries/0"][0] == 9_000
    assert wm.current() == 9_000


def test_state_is_the_shared_dict_that_gets_persisted() -> None:
    state: dict[str, list] = {"deliveries/0": [1_000, False]}
    wm = Watermarks(("deliveries",), state)
    wm.advance("deliveries/0", 2_000)
    wm.observe("deliveries/1", 3_000, idle=True)
    assert state == {"deliveries/0": [2_000, False], "deliveries/1": [3_000, True]}
    assert Watermarks(("deliveries",), state).current() == 2_000
