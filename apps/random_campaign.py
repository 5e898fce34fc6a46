"""Seeded random fault campaigns: the catalogue's physical faults at other magnitudes and times.

The standard campaign is one point in a large space; these draw the rest of it. Each campaign
injects every physical fault of the catalogue (1-13) once, its magnitude drawn uniformly across
the catalogue's documented range (both signs where the range has them), at a random onset and
for a random duration, each in a slot of its own with time to recover after it. With
`compound=True` the faults come in overlapping pairs instead, one pair always two sensor faults
at once (a load cell, the NIR's bias, the NIR's dropouts).

A fault is only worth scoring for detection when it can be seen at all: `detectability` states,
for each drawn fault, the effect it has on a measured variable against that variable's noise,
and calls it detectable when the effect stands clear of the noise (`CLEAR_SIGMAS`). The figures
come from the twin's data-sheet values (`core/parameters.py`, `core/layouts/`), which a real
plant would have from its instruments' specifications; the controller never reads them.

    plant campaign random --seed 7 --compound -o scenarios/random_7.yaml
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from apps.scenario import Scenario, ScenarioEvent
from core.faults import CATALOGUE
from twin.ledger import Ledger

HOURS = 8.0  # h, one shift: 13 faults with room to recover between them
LEAD_S = 300.0  # s of steady production before the first slot
RECOVERY_S = 480.0  # s after a fault ends before the slot's end: the line settles again
MIN_DURATION_S = 300.0  # s, shortest fault drawn
MAX_DURATION_S = 1800.0  # s, longest fault drawn
COMPANION_DELAY_S = 5.0  # s from the gate seizing to the disturbance it should reject
# s a refill disturbance needs the line producing after its refill to make its bump at all: the
# refilled powder's densification decays with a 60 s time constant, running or not
# (`FeederParams.densification_decay_s`), so only a feeder that runs through it over-delivers,
# and the bump reaches the probe through the blender's 60 s mean residence time
REFILL_SHOWS_AFTER_S = 60.0
SENSOR_FAULTS = ("load_cell_drift", "nir_bias", "nir_dropout")

# Noise of the measured variables, from the instruments' data sheets (the twin's parameters).
NIR_SD_PCT_LC = 0.5  # % LC: NIR prediction SD 0.05 % w/w at a 10 % w/w blend
CLEAR_SIGMAS = 6.0  # an effect this many single-reading SDs clear of the noise is detectable
# A blend upset reaches the NIR through the blender's RTD (5 tanks, 60 s mean): a feed-factor
# jump of m that the feeder corrects in about 30 s (refill hold, then gravimetric learning)
# peaks at 30 s x 0.0163 /s (the RTD's peak) x m = 0.49 m of the blend, relative.
REFILL_PEAK_PER_UNIT = 0.49
# An ordinary refill's own jump: densification (4 %) and the hopper filling from 1.5 to 4.5 kg
# of 6 with a 10 % fill loss (5 %), both unseen by the volumetric estimate during the refill.
NORMAL_REFILL_JUMP = 0.04 + 0.05
# What a disturbed refill must stand clear of is the spread of ordinary refills' bumps, not the
# NIR's reading noise alone: the NIR's largest rise in the four minutes after an ordinary API
# refill, measured on the twin (random campaigns 1, 3, 5, 7, 10, 21, 24, 28: 26 refills), was
# 0.18-0.76 % w/w, mean 0.45, SD 0.11 % w/w (1.1 % LC: the hopper level at the refill, the
# flow noise through it). A disturbance of 0.12 measured 0.43 % w/w, inside that spread.
ORDINARY_REFILL_BUMP_SD_PCT_LC = 1.1
API_DRIVE_PCT = 42.0  # % drive the API feeder needs at 2 kg/h: a bridge saturates it above 58 %
FEED_FACTOR_SD = 0.01  # relative SD of the feeders' learnt feed factor (2 % flow noise, 30 s)
NOISE_RATIO_RELIABLE = 2.5  # flow-noise multiplier a 300-sample RSD tells from 1x reliably
DROPOUT_SD = 0.05  # SD of the lost-spectra share over 60 spectra, around p = 0.2
WEIGHT_SD_PCT = 0.13  # % of target: checkweigher 0.4 % RSD averaged over 10 tablets
# A lot's density change moves the blend's bulk density by the excipient's share of the
# blend's *volume*, not of its mass: per kg of blend 0.89 kg at 0.55 g/cm3 against 0.10 kg of
# API at 0.35 and 0.01 kg of lubricant at 0.30 (the feeders' data sheets), 1.62 of 1.94 L.
EXCIPIENT_VOLUME_SHARE = (0.89 / 0.55) / (0.89 / 0.55 + 0.10 / 0.35 + 0.01 / 0.30)
THICKNESS_MIN_MM = 0.03  # mm a thickness gauge (noise-free at 0.001 mm) shows past its drift
STICTION_MIN_MM = 0.05  # mm: below this the stick-slip hides inside the weight loop's steps
TURRET_MIN_RPM = 0.5  # rpm between turret setpoint and speed a drive shows clearly
IMPELLER_MIN = 0.06  # share of speed lost the drive's own tachometer shows clearly


@dataclass(frozen=True, slots=True)
class DrawnFault:
    """One fault of a random campaign and whether a controller can be expected to see it."""

    kind: str
    magnitude: float
    onset_s: float
    duration_s: float
    detectable: bool
    why: str
    companion: bool = False  # added to make another fault show (the stuck gate's disturbance)


@dataclass(frozen=True, slots=True)
class RandomCampaign:
    seed: int
    compound: bool
    scenario: Scenario
    faults: tuple[DrawnFault, ...]

    def detectable(self, kind: str, onset_s: float) -> bool:
        """Whether the fault of `kind` injected at `onset_s` counts for the detection rate."""
        for fault in self.faults:
            if fault.kind == kind and abs(fault.onset_s - onset_s) < 0.5:
                return fault.detectable
        return True

    def scored(self, delays: Mapping[str, float | None], ledger: Ledger) -> dict[str, float | None]:
        """The detection delays (`kind@onset` -> s, None when missed) of the faults a run is
        scored on: those detectable at their magnitude, but
        - a stuck gate's companion when the gate seized at reject. The companion is there to
          make a gate seized at accept show; one seized at reject shows by itself (it does not
          go back to accept) and the line is stopped at once, as the catalogue asks: the
          disturbance then falls on a stopped line and has nothing to show on (random
          campaign 36 compound);
        - a refill disturbance whose line stopped within `REFILL_SHOWS_AFTER_S` of the refill:
          the feeders stop with it, and the over-delivery that makes the bump never happens
          (random campaign 10 compound: a 90 % impeller slowdown starved the press 17 s
          after the refill; the press cannot run slower than its 11 rpm).
        Where the gate stood and when the line produced are the run's ground truth
        (`ledger`), known only after it."""
        companions = {f.onset_s for f in self.faults if f.companion}
        counted: dict[str, float | None] = {}
        for key, delay in delays.items():
            kind, onset = key.split("@")[0], float(key.split("@")[1])
            if not self.detectable(kind, onset):
                continue
            seized_at = onset - COMPANION_DELAY_S
            if any(abs(onset - c) < 0.5 for c in companions) and _rejecting(ledger, seized_at):
                continue
            if kind == "refill_disturbance" and not _producing(
                ledger, onset, onset + REFILL_SHOWS_AFTER_S
            ):
                continue
            counted[key] = delay
        return counted


def _rejecting(ledger: Ledger, at_s: float) -> bool:
    """Whether the gate stood at reject at plant time `at_s`: the first tablets pressed from
    then on were diverted, or none were pressed (the line holds the gate at reject when it
    does not produce)."""
    for piece in ledger.slices:
        if piece.time >= at_s:
            return piece.time > at_s + COMPANION_DELAY_S or piece.diverted
    return True


def _producing(ledger: Ledger, start_s: float, end_s: float, gap_s: float = 5.0) -> bool:
    """Whether the line pressed tablets from `start_s` to `end_s` without stopping: no more
    than `gap_s` between two slices (one a plant second while the press turns)."""
    last = start_s
    for piece in ledger.slices:
        if piece.time < start_s:
            continue
        if piece.time - last > gap_s:
            return False
        if piece.time >= end_s:
            return True
        last = piece.time
    return False


def detectability(kind: str, magnitude: float, duration_s: float) -> tuple[bool, str]:
    """Whether a fault of this size shows in a measured variable clear of its noise, and why."""
    m = magnitude
    limit = CLEAR_SIGMAS * NIR_SD_PCT_LC
    if kind == "refill_disturbance":
        extra = 100.0 * REFILL_PEAK_PER_UNIT * m
        normal = 100.0 * REFILL_PEAK_PER_UNIT * NORMAL_REFILL_JUMP
        need = CLEAR_SIGMAS * ORDINARY_REFILL_BUMP_SD_PCT_LC
        return extra >= need, (
            f"NIR bump about {extra:.1f} % LC beyond an ordinary refill's {normal:.1f} % LC, whose "
            f"bumps spread by {ORDINARY_REFILL_BUMP_SD_PCT_LC} % LC (needs {need:.1f} beyond it)"
        )
    if kind == "feed_factor_drift":
        change = abs(m) * min(duration_s, 1800.0) / 3600.0
        # As clear of the spread as every other fault (it was 5 SDs: random campaign 33, a
        # 0.25 /h drift of 13 min, 5.5 % at its very end, seen 4.8 % by the learnt feed factor
        # and 2.7 % by its 2-min average, was scored a miss).
        need = CLEAR_SIGMAS * FEED_FACTOR_SD
        return change >= need, (
            f"feed factor moves {change:.1%} within 30 min against its {FEED_FACTOR_SD:.0%} "
            f"spread (needs {need:.0%})"
        )
    if kind == "bridging":
        # Within a minute, beside the fastest density drift (1/h: 1.7 %) and 3x the spread.
        need = 10 * FEED_FACTOR_SD
        saturates = m > 1.0 - API_DRIVE_PCT / 100.0
        return m >= need, (
            f"feed factor drops {m:.0%} in seconds against its {FEED_FACTOR_SD:.0%} spread "
            f"and a drift's 1.7 % a minute (needs {need:.0%})"
            + ("; the drive saturates and the flow falls" if saturates else "; the drive copes")
        )
    if kind == "feeder_noise":
        return m >= NOISE_RATIO_RELIABLE and duration_s >= 900.0, (
            f"flow RSD x{m:.1f}; a 300-s RSD tells x{NOISE_RATIO_RELIABLE} from x1, and needs "
            "5 quiet minutes between refills (15 min of fault)"
        )
    if kind == "load_cell_drift":
        effect = 100.0 * abs(m) / (1.0 + m)
        return effect >= limit, (
            f"true API flow off by {effect:.1f} % LC, seen by NIR against its "
            f"{NIR_SD_PCT_LC} % LC noise (needs {limit:.1f})"
        )
    if kind == "impeller_slowdown":
        return m >= IMPELLER_MIN, (
            f"impeller {m:.0%} below its setpoint on its tachometer (needs {IMPELLER_MIN:.0%})"
        )
    if kind == "nir_bias":
        effect = 10.0 * abs(m)  # % LC at a 10 % w/w blend
        return effect >= limit, (
            f"NIR offset {effect:.1f} % LC against its {NIR_SD_PCT_LC} % LC noise, reconciled "
            f"against the feeders (needs {limit:.1f})"
        )
    if kind == "nir_dropout":
        need = 0.15 + 2 * DROPOUT_SD
        return m >= need, (
            f"{m:.0%} of spectra lost against a {DROPOUT_SD:.0%} sampling spread over 60 spectra "
            f"(needs {need:.0%})"
        )
    if kind == "lot_density_change":
        # 1/density is the volume per kg: the excipient's part of it scales by 1/(1 + m).
        share = EXCIPIENT_VOLUME_SHARE
        effect = 100.0 * abs(1.0 / (1.0 - share + share / (1.0 + m)) - 1.0)
        need = 15 * WEIGHT_SD_PCT
        return effect >= need, (
            f"weight per mm of fill depth shifts {effect:.1f} % against the checkweigher's "
            f"{WEIGHT_SD_PCT} % (needs {need:.1f})"
        )
    if kind == "punch_wear":
        wear = m * duration_s / 3600.0
        return wear >= THICKNESS_MIN_MM, (
            f"tablets {wear:.3f} mm thicker by the fault's end (needs {THICKNESS_MIN_MM} mm)"
        )
    if kind == "fill_depth_stiction":
        return m >= STICTION_MIN_MM, (
            f"fill depth sticks in a {m:.3f} mm band (needs {STICTION_MIN_MM} mm to show "
            "beside the weight loop's own steps)"
        )
    if kind == "turret_speed_step":
        return abs(m) >= TURRET_MIN_RPM, (
            f"turret {m:+.2f} rpm off its setpoint (needs {TURRET_MIN_RPM} rpm)"
        )
    if kind == "diverter_stuck":
        return True, "a disturbance the gate must reject follows it: the gate's feedback shows"
    raise ValueError(f"not a physical fault: {kind}")


def _magnitude(rng: random.Random, kind: str) -> float:
    fault = CATALOGUE[kind]
    if kind == "diverter_stuck":
        return fault.default_magnitude
    return round(rng.uniform(fault.low, fault.high), 4)


def _fault(
    kind: str, magnitude: float, onset: float, duration: float, reason: str = ""
) -> tuple[ScenarioEvent, DrawnFault]:
    fault = CATALOGUE[kind]
    ok, why = detectability(kind, magnitude, duration)
    event = ScenarioEvent(
        at_s=round(onset),
        action="fault",
        kind=kind,
        target=fault.default_target,
        magnitude=None if kind == "diverter_stuck" else magnitude,
        duration_s=0.0 if kind == "diverter_stuck" else duration,
        reason=reason or f"{fault.number}: {'detectable' if ok else 'not detectable'}: {why}",
    )
    drawn = DrawnFault(
        kind=kind,
        magnitude=magnitude,
        onset_s=event.at_s,
        duration_s=event.duration_s,
        detectable=ok,
        why=why,
        companion=bool(reason),
    )
    return event, drawn


def _draw(
    rng: random.Random, kind: str, onset: float, latest_end: float
) -> tuple[list[ScenarioEvent], list[DrawnFault]]:
    """Events of one fault with onset `onset`, over by `latest_end`, and the faults drawn."""
    room = max(latest_end - onset, MIN_DURATION_S)
    duration = round(rng.uniform(MIN_DURATION_S, min(MAX_DURATION_S, room)))
    event, drawn = _fault(kind, _magnitude(rng, kind), onset, duration)
    events, faults = [event], [drawn]
    if kind == "diverter_stuck":
        # Something the seized gate should reject; then maintenance frees it and restarts.
        # It comes at once, so the gate's first call to reject is this disturbance's: a
        # minute later, an ordinary excursion could find the gate stuck first and the line
        # be stopped before the disturbance's refill ended, leaving nothing to see (random
        # campaign 19: found stuck 58 s after it seized, aborted 5 s before the refill ended).
        why = "13: a disturbance the seized gate should reject"
        event, drawn = _fault("refill_disturbance", 0.4, onset + COMPANION_DELAY_S, 180.0, why)
        events.append(event)
        faults.append(drawn)
        free = round(onset + duration)
        events += [
            ScenarioEvent(at_s=free, action="clear", kind=kind, reason="maintenance freed it"),
            ScenarioEvent(at_s=free + 60, action="line", line="reset", reason="gate repaired"),
            ScenarioEvent(at_s=free + 120, action="line", line="start", reason="restart"),
        ]
    return events, faults


def random_campaign(seed: int, *, compound: bool = False, hours: float = HOURS) -> RandomCampaign:
    """Every physical fault once, drawn from `seed`; with `compound`, in overlapping pairs."""
    rng = random.Random(f"campaign:{seed}:{compound}")
    kinds = [kind for kind in CATALOGUE if kind != "diverter_stuck"]
    rng.shuffle(kinds)
    groups: list[list[str]]
    if compound:
        sensors = rng.sample(SENSOR_FAULTS, 2)
        rest = [kind for kind in kinds if kind not in sensors]
        groups = [sensors] + [rest[i : i + 2] for i in range(0, len(rest), 2)]
        rng.shuffle(groups)
    else:
        groups = [[kind] for kind in kinds]
    # The stuck gate stops the line and needs a repair: its own slot, anywhere in the run.
    groups.insert(rng.randrange(len(groups) + 1), ["diverter_stuck"])
    slot = (hours * 3600.0 - LEAD_S) / len(groups)
    events: list[ScenarioEvent] = []
    faults: list[DrawnFault] = []
    for i, group in enumerate(groups):
        start = LEAD_S + i * slot
        latest_end = start + slot - RECOVERY_S
        first = start + rng.uniform(60.0, slot / 4)
        onsets = [first]
        if len(group) == 2:
            # The second starts while the first is on: one to four minutes after it (every
            # fault lasts five minutes or more).
            onsets.append(first + rng.uniform(60.0, 240.0))
        for kind, onset in zip(group, onsets, strict=True):
            more_events, more_faults = _draw(rng, kind, onset, latest_end)
            events += more_events
            faults += more_faults
    events.sort(key=lambda e: e.at_s)
    faults.sort(key=lambda f: f.onset_s)
    name = f"random campaign {seed}{' compound' if compound else ''}"
    description = "every physical fault, magnitudes drawn across the catalogue's ranges" + (
        ", in overlapping pairs" if compound else ""
    )
    scenario = Scenario(
        name=name,
        description=description,
        seed=seed,
        hours=hours,
        warm_start=True,
        events=tuple(events),
    )
    return RandomCampaign(seed=seed, compound=compound, scenario=scenario, faults=tuple(faults))


def _time(seconds: float) -> str:
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (sec, "s")) if v) or "0s"


def to_yaml(campaign: RandomCampaign) -> str:
    """The campaign as a scenario file of the usual format (`apps.scenario`)."""
    events: list[dict[str, Any]] = []
    for e in campaign.scenario.events:
        raw: dict[str, Any] = {"at": _time(e.at_s)}
        if e.action == "fault":
            raw["fault"] = e.kind
            raw["target"] = e.target
            if e.kind != "diverter_stuck":
                raw["magnitude"] = e.magnitude
            raw["duration"] = _time(e.duration_s) if e.duration_s else 0
        elif e.action == "clear":
            raw["clear"] = e.kind
        else:
            raw["line"] = e.line
        raw["reason"] = e.reason
        events.append(raw)
    scenario = campaign.scenario
    body = {
        "name": scenario.name,
        "description": scenario.description,
        "seed": scenario.seed,
        "hours": scenario.hours,
        "warm_start": scenario.warm_start,
        "events": events,
    }
    flag = " --compound" if campaign.compound else ""
    header = (
        f"# Generated by `plant campaign random --seed {campaign.seed}{flag}`.\n"
        "# Each fault's reason says whether it is detectable at its magnitude, and why.\n"
    )
    return header + yaml.safe_dump(body, sort_keys=False, width=100, allow_unicode=True)
