"""A probe gone quiet whose last estimate contradicted the feeders.

Under heavy NIR dropout the feeders are the only estimate between spectra. When the last
spectrum contradicted them beyond their combined uncertainty, it stays a second opinion for a
residence time (`nir_hold_s`); past that, nothing independent confirms the feeders, and the blend
is not judged by them alone (random campaigns 248 and 280 compound: under 96 and 99.7 % dropout,
load cells drifting -9 and -43 % made the blend rich, and tablets at 107 and 122-137 % LC judged
by the feeders between spectra were released).
"""

from __future__ import annotations

import pytest

from apps.closed_loop import run
from controller import ControllerConfig
from controller.blend import Blend
from controller.supervisor import Supervisor
from core.faults import FaultSpec
from twin import Plant

CFG = ControllerConfig()
NOW = 1000.0
FEEDERS = 9.9  # % w/w: the feeders' estimate, misled by the API feeder's load cell
HELD = 13.2  # % w/w: the last spectrum's estimate (campaign 280 compound at 22,116 s)


def _quiet(last_spectrum_s_ago: float, held: float = HELD) -> Blend:
    blend = Supervisor(CFG).blend
    blend.nir_value, blend.feeders_value, blend.last_nir_value = None, FEEDERS, held
    blend.tel.observe("nir.api_pct", None, "bad", NOW)  # a lost spectrum: the time only
    blend.nir.last_good = NOW - last_spectrum_s_ago
    return blend


def test_within_the_hold_the_last_estimate_is_a_second_opinion() -> None:
    estimate, _ = _quiet(CFG.nir_hold_s / 2).trusted()
    assert estimate == pytest.approx(HELD)


def test_past_the_hold_a_contradicted_feeder_estimate_is_no_estimate() -> None:
    estimate, _ = _quiet(CFG.nir_hold_s + 1.0).trusted()
    assert estimate is None  # the gate diverts: "no trustworthy estimate of the blend"


def test_past_the_hold_feeders_the_last_estimate_agreed_with_are_believed() -> None:
    estimate, _ = _quiet(CFG.nir_hold_s + 1.0, held=FEEDERS + 0.1).trusted()
    assert estimate == pytest.approx(FEEDERS)


def test_a_diagnosed_probe_offset_is_taken_out_of_the_last_estimate() -> None:
    blend = _quiet(CFG.nir_hold_s + 1.0)
    blend.suspect_probe(HELD - FEEDERS)  # the probe reads that much high: the two agree
    estimate, _ = blend.trusted()
    assert estimate == pytest.approx(FEEDERS)


def test_a_feed_factor_off_its_usual_leaves_the_feeders_unconfirmed() -> None:
    """A load cell's drift shows in the feed factor as a bridge's or a bulk density's would;
    only the NIR tells them apart."""
    blend = _quiet(CFG.nir_hold_s + 1.0, held=FEEDERS + 0.1)
    blend.conds.update(NOW, "feed_factor_drift", True, 0.0, "drifting")
    estimate, _ = blend.trusted()
    assert estimate is None


@pytest.mark.parametrize("drift", [-0.43, 0.2])
def test_a_load_cell_drifting_while_the_probe_is_all_but_silent_releases_nothing(
    drift: float,
) -> None:
    """The closed loop: 99.7 % of the spectra lost for 25 minutes, the API feeder's load cell
    drifting meanwhile (before the rule: 1,354 and 2,374 OOS tablets released)."""
    plant = Plant(seed=3, warm_start=True)
    plant.inject(FaultSpec("nir_dropout", magnitude=0.997, duration_s=1500, onset_s=900))
    plant.inject(FaultSpec("load_cell_drift", magnitude=drift, duration_s=415, onset_s=1010))
    run(plant, Supervisor(), 2700.0)
    assert plant.ledger.oos_mass > 1.0  # the drift made OOS blend
    assert plant.ledger.oos_accepted_tablets == 0
