"""ISA-18.2 / EEMUA 191 alarm load measures from transitions (core.alarm_measures)."""

from __future__ import annotations

import pytest

from core.alarm_measures import AlarmRecord, measures


def raise_(t: float, alarm: str, priority: int = 500, suppressed: bool = False) -> AlarmRecord:
    return AlarmRecord(t, alarm, "raise", priority, suppressed)


def test_alarms_per_10_minutes_and_a_flood_of_more_than_10() -> None:
    flood = [raise_(600 + i * 10, f"a{i}") for i in range(11)]  # 11 in the second window
    calm = [raise_(1300, "b")]
    m = measures([*flood, *calm], 0.0, 1800.0)
    assert m.annunciated == 12
    assert m.per_10min_max == 11 and m.per_10min_avg == pytest.approx(4.0)
    assert m.flood_windows == 1 and m.flood_time_pct == pytest.approx(100 / 3)


def test_three_raises_within_a_minute_is_chattering() -> None:
    chatter = [raise_(t, "nir.api_pct") for t in (0, 20, 50)]
    slow = [raise_(t, "press.hardness") for t in (0, 100, 200)]
    m = measures([*chatter, *slow], 0.0, 600.0)
    assert m.chattering == ("nir.api_pct",)


def test_an_alarm_active_past_the_limit_is_stale_and_a_cleared_one_is_not() -> None:
    records = [
        raise_(0, "old"),
        raise_(0, "gone"),
        AlarmRecord(100, "gone", "clear"),
        raise_(3000, "young"),
    ]
    assert measures(records, 0.0, 3600.0, stale_after_s=3600.0).stale == ("old",)


def test_time_to_acknowledge_and_the_ones_never_acknowledged() -> None:
    records = [
        raise_(0, "a"),
        AlarmRecord(30, "a", "acknowledge"),
        raise_(100, "b"),
        AlarmRecord(200, "b", "acknowledge"),
        raise_(300, "c"),
    ]
    m = measures(records, 0.0, 600.0)
    assert (m.acknowledged, m.unacknowledged) == (2, 1)
    assert m.ack_median_s == pytest.approx(65.0)


def test_shelved_alarms_are_not_annunciated_and_the_top_10_is_by_count() -> None:
    records = [raise_(i, "loud") for i in range(0, 500, 100)]
    records += [raise_(10, "quiet"), raise_(20, "shelved", suppressed=True)]
    m = measures(records, 0.0, 600.0)
    assert m.top10 == (("loud", 5), ("quiet", 1))
    assert m.annunciated == 6 and m.top10_share_pct == pytest.approx(100.0)
