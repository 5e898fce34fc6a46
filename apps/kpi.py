"""Scores of a run (shared/domain.md, 'How control quality is scored').

Quality outcome from the ground truth (every tablet slice's true content and fate), fault
handling from the controller's alarms against the faults that were really injected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from controller import Alarm
from core.faults import CATALOGUE
from twin.faults import ActiveFault
from twin.ledger import Ledger, TabletSlice

DETECTION_GRACE_S = 600.0  # an alarm this long after a fault ends still counts as detecting it
USP905_K = 2.4  # acceptability constant for n = 10 (USP <905>)


@dataclass(frozen=True, slots=True)
class Kpis:
    tablets_made: int
    oos_accepted: int  # released: sent to accept and not quarantined
    in_spec_pct: float
    true_oos_kg: float
    diverted_kg: float  # diverted on command (controller, operator), not by the line's own hold
    forced_diverted_kg: float  # start-up, stop and trip material the line diverted itself
    blend_rsd_pct: float  # RSD of released (accepted, not quarantined) tablets' true content
    acceptance_value: float  # USP <905> from released tablets' true content
    iae: dict[str, float]  # integral of absolute error per loop, per hour of production
    detection_delay_s: dict[str, float | None] = field(default_factory=dict)
    false_alarms_per_h: float = 0.0
    # Reached accept, then held back by a quarantine (fault 13): neither released nor OOS
    # accepted, and not in `blend_rsd_pct` or `acceptance_value` (those judge released tablets).
    quarantined: int = 0
    quarantined_kg: float = 0.0
    oos_quarantined: int = 0
    cleaned_out_kg: float = 0.0  # removed from an overfull feed frame on a reset: no tablets

    @property
    def detection_rate(self) -> float:
        found = [d for d in self.detection_delay_s.values() if d is not None]
        return len(found) / len(self.detection_delay_s) if self.detection_delay_s else 1.0

    @property
    def mean_detection_delay_s(self) -> float | None:
        found = [d for d in self.detection_delay_s.values() if d is not None]
        return sum(found) / len(found) if found else None


def _weighted(slices: Sequence[TabletSlice]) -> tuple[float, float]:
    total = sum(s.tablets for s in slices)
    if total <= 0:
        return math.nan, math.nan
    mean = sum(s.content_pct * s.tablets for s in slices) / total
    var = sum(s.tablets * (s.content_pct - mean) ** 2 for s in slices) / total
    return mean, math.sqrt(var)


def acceptance_value(mean: float, sd: float) -> float:
    """USP <905> AV with reference value M clamped to 98.5-101.5 % of label claim."""
    reference = min(max(mean, 98.5), 101.5)
    return abs(reference - mean) + USP905_K * sd


class FaultLike(Protocol):
    """What detection needs of a fault: the twin's `ActiveFault`, or one read from storage."""

    @property
    def kind(self) -> str: ...

    @property
    def onset_s(self) -> float: ...

    @property
    def ended_s(self) -> float | None: ...


def detection(
    faults: Iterable[FaultLike], alarms: Iterable[Alarm], hours: float
) -> tuple[dict[str, float | None], float]:
    """Delay to the first alarm naming each injected fault, and false alarms per hour.

    An alarm is false when it names a kind from the fault catalogue and no fault of that kind
    was active at the time (or within the grace period after it ended).
    """
    faults = list(faults)
    raised = [a for a in alarms if a.raised]
    delays: dict[str, float | None] = {}
    for fault in faults:
        end = (fault.ended_s if fault.ended_s is not None else math.inf) + DETECTION_GRACE_S
        hits = [a.time for a in raised if a.name == fault.kind and fault.onset_s <= a.time <= end]
        delays[f"{fault.kind}@{fault.onset_s:g}"] = min(hits) - fault.onset_s if hits else None
    false = 0
    for alarm in raised:
        if alarm.name not in CATALOGUE:
            continue
        if not any(
            f.kind == alarm.name
            and f.onset_s
            <= alarm.time
            <= (f.ended_s if f.ended_s is not None else math.inf) + DETECTION_GRACE_S
            for f in faults
        ):
            false += 1
    return delays, false / hours if hours > 0 else 0.0


def compute(
    ledger: Ledger,
    faults: Iterable[ActiveFault],
    alarms: Iterable[Alarm],
    hours: float,
    target_weight_mg: float = 400.0,
    hardness_sp_n: float = 120.0,
) -> Kpis:
    slices = list(ledger.slices)
    released = [s for s in slices if not s.diverted and not s.quarantined]
    mean, sd = _weighted(released)
    made_h = len(slices) / 3600.0 or 1.0
    iae = {
        "content_pct": sum(abs(s.content_pct - 100.0) for s in slices) / made_h,
        "weight_pct": sum(abs(s.weight_mg / target_weight_mg - 1.0) * 100 for s in slices) / made_h,
        "hardness_n": sum(abs(s.hardness_n - hardness_sp_n) for s in slices) / made_h,
    }
    delays, false_rate = detection(faults, alarms, hours)
    return Kpis(
        tablets_made=round(ledger.tablets_made),
        oos_accepted=round(ledger.oos_accepted_tablets),
        in_spec_pct=ledger.in_spec_pct,
        true_oos_kg=ledger.oos_mass,
        diverted_kg=ledger.mass_diverted_on_command,
        forced_diverted_kg=ledger.mass_diverted_forced,
        blend_rsd_pct=100.0 * sd / mean if mean else math.nan,
        acceptance_value=acceptance_value(mean, sd),
        iae={k: round(v, 1) for k, v in iae.items()},
        detection_delay_s=delays,
        false_alarms_per_h=false_rate,
        quarantined=round(ledger.tablets_quarantined),
        quarantined_kg=ledger.mass_quarantined,
        oos_quarantined=round(ledger.oos_quarantined_tablets),
        cleaned_out_kg=ledger.mass_cleaned_out,
    )
