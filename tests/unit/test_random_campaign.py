"""Random fault campaigns: every physical fault, drawn across its range, as a scenario file."""

from __future__ import annotations

import itertools

import yaml
from typer.testing import CliRunner

from apps.cli import app
from apps.random_campaign import SENSOR_FAULTS, detectability, random_campaign, to_yaml
from apps.scenario import parse_scenario
from core.faults import CATALOGUE
from twin.ledger import Ledger, TabletSlice


def test_a_campaign_is_a_scenario_file_of_the_usual_format_and_reads_back_the_same() -> None:
    for compound in (False, True):
        campaign = random_campaign(11, compound=compound)
        assert parse_scenario(yaml.safe_load(to_yaml(campaign))) == campaign.scenario


def test_every_physical_fault_is_drawn_once_within_its_range() -> None:
    for seed in range(6):
        campaign = random_campaign(seed)
        kinds = [f.kind for f in campaign.faults if not f.companion]
        assert sorted(kinds) == sorted(CATALOGUE)
        for fault in campaign.faults:
            entry = CATALOGUE[fault.kind]
            assert entry.low <= fault.magnitude <= entry.high
            assert 0 < fault.onset_s < campaign.scenario.hours * 3600


def test_magnitudes_take_both_signs_where_the_catalogue_allows() -> None:
    signed = [k for k, f in CATALOGUE.items() if f.low < 0 < f.high]
    drawn = [f for seed in range(20) for f in random_campaign(seed).faults if f.kind in signed]
    for kind in signed:
        assert {f.magnitude > 0 for f in drawn if f.kind == kind} == {True, False}, kind


def test_the_same_seed_draws_the_same_campaign() -> None:
    assert random_campaign(4, compound=True) == random_campaign(4, compound=True)
    assert random_campaign(4) != random_campaign(5)


def test_compound_campaigns_overlap_faults_in_pairs_two_sensor_faults_among_them() -> None:
    for seed in range(6):
        faults = [f for f in random_campaign(seed, compound=True).faults if not f.companion]
        by_onset = sorted(faults, key=lambda f: f.onset_s)
        pairs = [
            (a, b) for a, b in itertools.pairwise(by_onset) if b.onset_s < a.onset_s + a.duration_s
        ]
        assert len(pairs) >= 5
        assert any({a.kind, b.kind} <= set(SENSOR_FAULTS) for a, b in pairs)


def test_detectability_weighs_the_effect_against_the_noise_of_what_shows_it() -> None:
    assert detectability("nir_bias", -1.0, 600)[0]  # 10 % LC against 0.5 % LC noise
    assert not detectability("nir_bias", 0.1, 600)[0]
    assert detectability("load_cell_drift", -0.1, 600)[0]
    assert not detectability("load_cell_drift", 0.01, 600)[0]
    assert not detectability("punch_wear", 0.01, 600)[0]  # 0.002 mm in ten minutes
    ok, why = detectability("turret_speed_step", -3.0, 600)
    assert ok and "rpm" in why


def test_a_feed_factor_drift_must_stand_as_clear_of_its_spread_as_every_other_fault() -> None:
    # 0.25 /h for 13 min moves it 5.5 %: under the 6 SDs (1 % each) the others need
    assert not detectability("feed_factor_drift", 0.2478, 793)[0]
    assert detectability("feed_factor_drift", 0.25, 900)[0]  # 6.25 %


def _ledger(gate_rejecting_from: float | None, pressed_until: float) -> Ledger:
    """Tablets pressed every second up to `pressed_until`, diverted from `gate_rejecting_from`."""
    ledger = Ledger(keep=None)
    for second in range(int(pressed_until)):
        diverted = gate_rejecting_from is not None and second >= gate_rejecting_from
        ledger.record(TabletSlice(second, "press", 10, 0.004, 400, 100, 120, False, diverted))
    return ledger


def test_a_stuck_gates_companion_is_scored_only_when_the_gate_seized_at_accept() -> None:
    campaign = random_campaign(1)
    stuck = next(f for f in campaign.faults if f.kind == "diverter_stuck")
    companion = next(f for f in campaign.faults if f.companion)
    assert companion.onset_s == stuck.onset_s + 5
    key = f"{companion.kind}@{companion.onset_s:g}"
    delays: dict[str, float | None] = {key: None, f"diverter_stuck@{stuck.onset_s:g}": 60.0}
    end = stuck.onset_s + 600
    # Seized at accept: the disturbance reaches accept, and a miss is a miss.
    assert key in campaign.scored(delays, _ledger(None, end))
    # Seized while diverting, or on a line that was not producing: nothing to show on.
    assert key not in campaign.scored(delays, _ledger(stuck.onset_s - 30, end))
    assert key not in campaign.scored(delays, _ledger(None, stuck.onset_s - 60))
    assert f"diverter_stuck@{stuck.onset_s:g}" in campaign.scored(delays, _ledger(None, end))


def test_a_refill_disturbance_is_scored_only_when_the_line_produced_on_after_the_refill() -> None:
    campaign = random_campaign(10, compound=True)
    refill = next(f for f in campaign.faults if f.kind == "refill_disturbance" and not f.companion)
    assert refill.detectable and refill.onset_s == 12925  # the one the press starved after
    key = f"refill_disturbance@{refill.onset_s:g}"
    delays: dict[str, float | None] = {key: None}
    # Pressing on for ten minutes: a miss is a miss.
    assert key in campaign.scored(delays, _ledger(None, refill.onset_s + 600))
    # Stopped 17 s after the refill (the feeders stop with it): no bump was ever made.
    assert key not in campaign.scored(delays, _ledger(None, refill.onset_s + 17))
    # A stop in between is a stop, even if the line was producing again a minute on.
    ledger = _ledger(None, refill.onset_s + 600)
    gap = (refill.onset_s + 20, refill.onset_s + 40)
    ledger.slices = type(ledger.slices)(s for s in ledger.slices if not gap[0] < s.time < gap[1])
    assert key not in campaign.scored(delays, ledger)


def test_the_cli_writes_the_campaign_and_says_what_is_detectable(tmp_path: object) -> None:
    result = CliRunner().invoke(app, ["campaign", "random", "--seed", "3", "--compound"])
    assert result.exit_code == 0, result.output
    assert parse_scenario(yaml.safe_load(result.stdout)).name == "random campaign 3 compound"
    assert "detectable" in result.stdout
