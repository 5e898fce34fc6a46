"""The alarm load of a run (ISA-18.2 clause 16, EEMUA 191) as `plant kpi` and `plant report`
show it: from an in-process campaign's transitions, or from the transitions the historian
stored (events of kind `alarm` with a priority: the server's Part 9 conditions). The measures
themselves are core.alarm_measures', the dashboards' InfluxQL computes the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from core.alarm_measures import STALE_AFTER_S, AlarmMeasures, AlarmRecord, measures
from core.alarms import Transition

#: A campaign lasts hours: an alarm active this long is stale there (ISA-18.2 says 24 h, which
#: a stored run of the stack keeps).
CAMPAIGN_STALE_S = 3600.0
STORED_STALE_S = STALE_AFTER_S
#: Stored transition states in which an alarm is not shown to an operator.
SUPPRESSED_STATES = ("shelved", "out_of_service")


def campaign_alarms(transitions: Iterable[Transition], hours: float) -> AlarmMeasures:
    """The alarm load of an in-process campaign from its alarm transitions."""
    records = [
        AlarmRecord(t.time, t.alarm, t.action, int(t.state.priority), t.state.suppressed_or_shelved)
        for t in transitions
    ]
    return measures(records, 0.0, hours * 3600.0, stale_after_s=CAMPAIGN_STALE_S)


def stored_alarms(rows: Iterable[dict[str, Any]], zero_s: float, hours: float) -> AlarmMeasures:
    """The alarm load of a stored run from its event rows (InfluxDB's `events`), on the run's
    own clock (seconds after `zero_s`, UTC)."""
    records = [
        AlarmRecord(
            int(r["time"]) / 1e9 - zero_s,
            str(r.get("alarm") or r.get("target") or ""),
            str(r.get("action") or ""),
            int(r["priority"]),
            r.get("state") in SUPPRESSED_STATES,
        )
        for r in rows
        if r.get("kind") == "alarm" and isinstance(r.get("priority"), int) and r["priority"] > 0
    ]
    return measures(records, 0.0, hours * 3600.0, stale_after_s=STORED_STALE_S)


def _number(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None and math.isfinite(value) else None


def alarm_json(m: AlarmMeasures, stale_after_s: float = CAMPAIGN_STALE_S) -> dict[str, Any]:
    return {
        "annunciated": m.annunciated,
        "per_10min_avg": _number(m.per_10min_avg, 2),
        "per_10min_max": m.per_10min_max,
        "flood_windows": m.flood_windows,
        "flood_time_pct": _number(m.flood_time_pct, 2),
        "chattering": list(m.chattering),
        "stale": list(m.stale),
        "stale_after_s": stale_after_s,
        "acknowledged": m.acknowledged,
        "unacknowledged": m.unacknowledged,
        "ack_median_s": _number(m.ack_median_s, 1),
        "ack_p90_s": _number(m.ack_p90_s, 1),
        "top10": [[alarm, n] for alarm, n in m.top10],
        "top10_share_pct": _number(m.top10_share_pct, 1),
        "by_priority": {str(p): n for p, n in m.by_priority.items()},
    }


def alarm_rows(
    alarms: dict[str, Any], show: Callable[[Any], str], unacknowledged: str = "none acknowledged"
) -> list[tuple[str, str]]:
    """The alarm load as (name, value) lines for people; `unacknowledged` says why none was."""
    top = ", ".join(f"{a} {n}" for a, n in alarms["top10"][:3]) or "none"
    return [
        ("alarms annunciated", show(alarms["annunciated"])),
        ("alarms per 10 min (avg / max)", f"{alarms['per_10min_avg']} / {alarms['per_10min_max']}"),
        (
            "alarm floods (>10 in 10 min)",
            f"{alarms['flood_windows']} ({alarms['flood_time_pct']} % of the time)",
        ),
        ("chattering alarms", ", ".join(alarms["chattering"]) or "none"),
        (f"stale alarms (> {alarms['stale_after_s']:g} s)", ", ".join(alarms["stale"]) or "none"),
        (
            "time to acknowledge",
            unacknowledged
            if not alarms["acknowledged"]
            else f"median {alarms['ack_median_s']} s, p90 {alarms['ack_p90_s']} s",
        ),
        ("top alarms", f"{top} ({alarms['top10_share_pct']} % for the top 10)"),
    ]
