"""Alarm load measures of ISA-18.2 (clause 16) and EEMUA 191, from alarm transitions.

- Annunciated alarms: raises (and escalations to a worse level) of alarms that were neither
  shelved nor out of service at the time: what an operator was actually shown.
- Alarms per 10 minutes: the average and the worst 10-minute window (ISA-18.2 table 5: about
  1 is "very likely acceptable", 2 "maximum manageable"; EEMUA 191 likewise).
- Floods: 10-minute windows with more than 10 alarms (ISA-18.2 16.5), and the share of the
  time in flood (target: under 1 %).
- Chattering: an alarm raised 3 or more times within 60 s (ISA-18.2 16.6; EEMUA 191).
- Stale: an alarm still active `stale_after_s` after it was raised (ISA-18.2 16.7 says 24 h;
  a campaign lasts hours, so `plant kpi` passes 1 h and says so).
- Time to acknowledge: from a raise to its acknowledgement, median and 90th percentile, and
  how many raises were never acknowledged.
- Top 10: the alarms raised most often, and their share of all annunciations (ISA-18.2 16.4:
  the top 10 are often 25-95 % of the load).

Pure (standard library): the KPIs of an in-process campaign, the tests and the dashboards'
definitions use the same rules; the dashboards compute them in InfluxQL from the stored
transitions (`dashboards/alarms.py`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

WINDOW_S = 600.0  # the 10-minute window of the alarm-rate measures
FLOOD_ALARMS = 10  # more than this many alarms in a window is a flood
CHATTER_COUNT = 3  # raised this many times ...
CHATTER_WINDOW_S = 60.0  # ... within this long is chattering
STALE_AFTER_S = 24 * 3600.0  # ISA-18.2: active for more than 24 h
TOP = 10


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """One transition, as the measures need it (plant or UTC seconds, consistently)."""

    time_s: float
    alarm: str
    action: str  # raise, level, clear, acknowledge, ...
    priority: int = 0
    suppressed: bool = False  # shelved or out of service at the time


@dataclass(frozen=True, slots=True)
class AlarmMeasures:
    annunciated: int
    per_10min_avg: float
    per_10min_max: int
    flood_windows: int
    flood_time_pct: float
    chattering: tuple[str, ...]
    stale: tuple[str, ...]
    acknowledged: int
    unacknowledged: int
    ack_median_s: float | None
    ack_p90_s: float | None
    top10: tuple[tuple[str, int], ...]
    top10_share_pct: float
    by_priority: dict[int, int]


def _percentile(values: Sequence[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = share * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def measures(
    records: Iterable[AlarmRecord],
    start_s: float,
    end_s: float,
    *,
    stale_after_s: float = STALE_AFTER_S,
) -> AlarmMeasures:
    """The measures of the transitions between `start_s` and `end_s`."""
    ordered = sorted((r for r in records if start_s <= r.time_s <= end_s), key=lambda r: r.time_s)
    shown = [r for r in ordered if r.action in ("raise", "level") and not r.suppressed]
    windows = max(math.ceil((end_s - start_s) / WINDOW_S), 1)
    counts = [0] * windows
    for r in shown:
        counts[min(int((r.time_s - start_s) // WINDOW_S), windows - 1)] += 1
    floods = sum(1 for c in counts if c > FLOOD_ALARMS)

    raises: dict[str, list[float]] = defaultdict(list)
    for r in shown:
        if r.action == "raise":
            raises[r.alarm].append(r.time_s)
    chattering = sorted(
        alarm
        for alarm, times in raises.items()
        if any(
            times[i + CHATTER_COUNT - 1] - times[i] <= CHATTER_WINDOW_S
            for i in range(len(times) - CHATTER_COUNT + 1)
        )
    )

    active_since: dict[str, float] = {}
    waiting_ack: dict[str, float] = {}
    delays: list[float] = []
    for r in ordered:
        if r.action in ("raise", "level"):
            active_since.setdefault(r.alarm, r.time_s)
            waiting_ack[r.alarm] = waiting_ack.get(r.alarm, r.time_s)
        elif r.action == "clear":
            active_since.pop(r.alarm, None)
        elif r.action == "acknowledge" and r.alarm in waiting_ack:
            delays.append(r.time_s - waiting_ack.pop(r.alarm))
    stale = sorted(a for a, since in active_since.items() if end_s - since >= stale_after_s)

    frequency = Counter(r.alarm for r in shown)
    top = tuple(frequency.most_common(TOP))
    by_priority = Counter(r.priority for r in shown)
    return AlarmMeasures(
        annunciated=len(shown),
        per_10min_avg=len(shown) / ((end_s - start_s) / WINDOW_S) if end_s > start_s else 0.0,
        per_10min_max=max(counts),
        flood_windows=floods,
        flood_time_pct=100.0 * floods / windows,
        chattering=tuple(chattering),
        stale=tuple(stale),
        acknowledged=len(delays),
        unacknowledged=len(waiting_ack),
        ack_median_s=_percentile(delays, 0.5),
        ack_p90_s=_percentile(delays, 0.9),
        top10=top,
        top10_share_pct=100.0 * sum(n for _, n in top) / len(shown) if shown else 0.0,
        by_priority=dict(sorted(by_priority.items(), reverse=True)),
    )
