"""The controller on campaigns it was not tuned on: seeded random campaigns, compound included.

Each campaign (`plant campaign random`) injects every physical fault once at a magnitude drawn
across the catalogue's range; compound ones overlap them in pairs, two sensor faults at once
among them. These hold the goals the controller reaches on them (issue 13): no OOS tablet
released, diverted mass within 3x the true OOS mass in each campaign and 1.5x over all, the
detectable faults detected, few false alarms. And the fail-safe rules, each on its own.
"""

from __future__ import annotations

import pytest

from apps.campaign import run_campaign
from apps.closed_loop import LoopLog, run
from apps.kpi import Kpis, compute
from apps.random_campaign import random_campaign
from apps.scenario import STANDARD_CAMPAIGN, load_scenario
from controller import ControllerConfig, Supervisor
from core.faults import FaultSpec
from twin import Plant

# 48 compound: a load cell's drift and a small NIR bias hiding it (181 OOS tablets released
# before the probe's suspicion had to last); 4 compound: an excipient feeder's noise under the
# API feeder's bridge; 70 compound (out of the tuning seeds 1-60): a -4.3 % load cell's drift
# under 66 % NIR dropout, the probe blamed before the feed factor showed it (445 tablets at
# 105 % LC released, the drift never diagnosed); 118 and 146 compound (outside the seeds 1-90
# the rules were worked out on): a -22 % load cell's drift taken for a small probe step (126
# tablets at 105-106 % LC released), and a +0.39 % w/w probe bias stepping while a +21 % load
# cell's drift made the blend leaner, never seen (555 tablets at 94.8-95.0 % LC released);
# 202 compound (outside every seed a rule cites): a -0.55 % w/w probe step measured at -0.81
# with a +21 % load cell's lean ramp in it, the blend judged 2.6 % LC too rich (123 tablets at
# 94.4-95.0 % LC released); 432 compound (never looked at before the rules for it): a -45 % load
# cell's drift under 92 % NIR dropout, judged by the feeders alone (897 tablets at 105-135 % LC
# released); 458 compound (looked at only after the rules for the seeds above): a probe step
# whose offset took in a load cell's drift beside it (1,314 tablets at 105.0-105.4 % LC released);
# 618 compound (looked at once, after every rule above): a +0.35 % w/w probe bias believed over
# as a +6 % load cell's drift brought the feeders to it, its end then taken for a new probe
# fault (386 tablets at 94.3-95.0 % LC released)
SEEDS = [
    (1, False),
    (2, True),
    (4, True),
    (48, True),
    (70, True),
    (118, True),
    (146, True),
    (202, True),
    (432, True),
    (458, True),
    (618, True),
]
IDS = [f"{seed}{' compound' if compound else ''}" for seed, compound in SEEDS]
MAX_FALSE_ALARMS_PER_H = 1.0  # the goal (issue 13)
MAX_STANDARD_DIVERTED_RATIO = 1.5  # the goal (issue 13)


def scores(seed: int, compound: bool) -> tuple[Kpis, int, int]:
    campaign = random_campaign(seed, compound=compound)
    result = run_campaign(campaign.scenario, controlled=True)
    kpis = compute(
        result.plant.ledger,
        result.plant.faults(include_ended=True),
        result.log.alarms,
        campaign.scenario.hours,
    )
    counted = campaign.scored(kpis.detection_delay_s, result.plant.ledger)
    return kpis, sum(d is not None for d in counted.values()), len(counted)


@pytest.fixture(scope="module")
def outcomes() -> dict[tuple[int, bool], tuple[Kpis, int, int]]:
    return {(seed, compound): scores(seed, compound) for seed, compound in SEEDS}


@pytest.mark.parametrize(("seed", "compound"), SEEDS, ids=IDS)
def test_the_goals_hold_on_a_random_campaign(
    outcomes: dict[tuple[int, bool], tuple[Kpis, int, int]], seed: int, compound: bool
) -> None:
    kpis, detected, detectable = outcomes[seed, compound]
    assert kpis.oos_accepted == 0  # quarantined tablets are not released
    assert kpis.diverted_kg <= 3.0 * kpis.true_oos_kg
    assert detected == detectable  # every fault detectable at its magnitude
    assert kpis.false_alarms_per_h <= MAX_FALSE_ALARMS_PER_H


# Campaigns that released OOS tablets and no longer do, while they still miss another goal
# (issue 13, open): 438 compound, the turret slowed while a bridge's lean blend was in the feed
# frame (73 tablets at 94.5-95.0 % LC released on the old timing; diverts 3.6x the true OOS
# mass, a denser lot of +2.5 % not detected); 454 compound, a sound probe blamed by elimination
# while a feed factor drift and a load cell's cancelled (2,591 tablets at 108-112 % LC released;
# the feed factor drift not detected).
RELEASED_BEFORE = [(438, True), (454, True)]


@pytest.mark.parametrize(
    ("seed", "compound"), RELEASED_BEFORE, ids=["438 compound", "454 compound"]
)
def test_no_oos_tablet_is_released_where_a_campaign_misses_another_goal(
    seed: int, compound: bool
) -> None:
    kpis, _, _ = scores(seed, compound)
    assert kpis.oos_accepted == 0


def test_over_all_campaigns_diversion_stays_within_one_and_a_half_times_the_true_oos(
    outcomes: dict[tuple[int, bool], tuple[Kpis, int, int]],
) -> None:
    diverted = sum(k.diverted_kg for k, _, _ in outcomes.values())
    true_oos = sum(k.true_oos_kg for k, _, _ in outcomes.values())
    assert diverted <= 1.5 * true_oos


def test_estimates_that_disagree_with_no_diagnosis_to_explain_it_divert_and_alarm() -> None:
    """The issue's case: a load cell drifting and the NIR biased the same way at once. Neither
    diagnosis explains the whole gap between the two estimates; the fail-safe diverts."""
    results = {}
    for controlled in (True, False):
        plant = Plant(seed=3, warm_start=True)
        plant.inject(FaultSpec("load_cell_drift", magnitude=0.1, duration_s=1200, onset_s=900))
        plant.inject(FaultSpec("nir_bias", magnitude=-0.5, duration_s=1200, onset_s=1000))
        log = run(plant, Supervisor() if controlled else None, 2700.0)
        results[controlled] = (plant, log)
    plant, log = results[True]
    assert any(a.name == "estimates_disagree" and a.raised for a in log.alarms)
    assert plant.ledger.oos_accepted_tablets == 0
    assert results[False][0].ledger.oos_accepted_tablets > 1000


def test_a_line_that_diverts_longer_than_the_limit_is_stopped_with_the_reason() -> None:
    plant = Plant(seed=3, warm_start=True)
    plant.inject(FaultSpec("bridging", magnitude=0.9, duration_s=1500, onset_s=900))
    log = run(plant, Supervisor(ControllerConfig(max_divert_s=300.0)), 2400.0)
    stops = [(t, a) for t, a, r in log.actions if a.kind == "line" and r.accepted]
    assert [a.target for _, a in stops] == ["stop"]
    t, stop = stops[0]
    assert "diverting for" in stop.reason and "300 s allowed" in stop.reason
    assert 900.0 + 300.0 < t < 900.0 + 300.0 + 120.0  # the diversion began within 2 minutes
    assert plant.state == "stopped" and plant.ledger.oos_accepted_tablets == 0


def test_the_standard_campaign_keeps_its_goals() -> None:
    scenario = load_scenario(STANDARD_CAMPAIGN)
    result = run_campaign(scenario, controlled=True)
    kpis = compute(
        result.plant.ledger,
        result.plant.faults(include_ended=True),
        result.log.alarms,
        scenario.hours,
    )
    assert kpis.oos_accepted == 0
    assert kpis.diverted_kg <= MAX_STANDARD_DIVERTED_RATIO * kpis.true_oos_kg
    assert kpis.detection_rate == 1.0
    assert kpis.false_alarms_per_h <= 1.0


def _raised(log: LoopLog, name: str) -> list[float]:
    return [a.time for a in log.alarms if a.name == name and a.raised]


def test_a_fast_feed_factor_drift_over_in_minutes_is_seen_while_it_lasts() -> None:
    """0.8 /h for 330 s moves the feed factor 7 %: its recent average, 3 % off for a minute,
    came too late; the cumulative sum of its excess over the curve does not."""
    plant = Plant(seed=3, warm_start=True)
    plant.inject(FaultSpec("feed_factor_drift", magnitude=0.8, duration_s=330, onset_s=900))
    log = run(plant, Supervisor(), 2400.0)
    assert [t for t in _raised(log, "feed_factor_drift") if 900 < t < 900 + 330 + 60]


def test_a_probe_step_smaller_than_the_spike_test_is_a_probe_fault() -> None:
    """-0.3 % w/w: under the spike test's 0.5, found against feeders that did not move, and the
    blend judged without it (no tablet diverted for the 3 % LC it seems to lose)."""
    results = {}
    for bias in (0.0, -0.3):
        plant = Plant(seed=3, warm_start=True)
        if bias:
            plant.inject(FaultSpec("nir_bias", magnitude=bias, duration_s=1200, onset_s=900))
        log = run(plant, Supervisor(), 2400.0)
        results[bias] = (plant, log)
    plant, log = results[-0.3]
    assert [t for t in _raised(log, "nir_bias") if 900 < t < 960]
    assert not _raised(results[0.0][1], "nir_bias")
    assert plant.ledger.oos_accepted_tablets == 0


def test_a_new_lot_is_judged_while_a_bridge_has_the_line_diverting() -> None:
    plant = Plant(seed=3, warm_start=True)
    plant.inject(FaultSpec("bridging", magnitude=0.9, duration_s=900, onset_s=900))
    plant.inject(FaultSpec("lot_density_change", magnitude=-0.2, duration_s=500, onset_s=1000))
    log = run(plant, Supervisor(), 2400.0)
    assert [t for t in _raised(log, "lot_density_change") if 1000 < t < 1500]
