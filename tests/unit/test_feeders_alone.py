"""Judging the blend when the probe gives no estimate: what the feeders alone cannot rule out.

Under heavy NIR dropout (90 % of spectra lost) the feeders' RTD prediction carries the judgement
for tens of seconds at a time. It is blind to what only the probe sees: a load cell drifting
(the feeder delivers what its cell misreports), and part of a refill's bump (the refilling
feeder reads its own volumetric estimate). Random campaigns outside the seeds the rules were
worked out on released tablets that way: 432 compound (a -45 % load cell under 92 % dropout:
897 tablets at 105-135 % LC), 392 compound (+10 %: 83 at 94 % LC), 447 (a refill under 89 %
dropout: 42 at 105 % LC).
"""

from __future__ import annotations

import pytest

from controller import ControllerConfig
from controller.blend import Blend
from controller.supervisor import Supervisor

CFG = ControllerConfig()
LC_PER_WW = CFG.target_weight_mg / CFG.label_claim_mg  # % LC per % w/w
FEEDERS = 9.81  # % w/w, the feeders' estimate (random campaign 432 compound at 5,360 s)
PROBE = 12.60  # the probe's last estimate then: the true blend was 13.57


def _blend() -> Blend:
    blend = Supervisor(CFG).blend
    blend.tel.newest = 5000.0
    blend.feeders_value = FEEDERS
    return blend


def _judge(blend: Blend, now: float, probe: float | None) -> None:
    blend.nir_value = probe
    blend.check_agreement(now, 1.0)


def test_a_disagreement_is_confirmed_on_evidence_the_dropouts_interrupt() -> None:
    """20 s of disagreement confirm the fail-safe, however many spectra are lost in between;
    judged as agreement, each lost one started the confirmation again."""
    blend = _blend()
    blend.disagreement.value = PROBE - FEEDERS
    now = 0.0
    for _ in range(3):  # 3 x (5 s with an estimate, 30 s without): 15 s of evidence
        for probe in [PROBE] * 5 + [None] * 30:
            now += 1.0
            _judge(blend, now, probe)
    assert not blend.conds.active("estimates_disagree")
    for _ in range(6):
        now += 1.0
        _judge(blend, now, PROBE)
    assert blend.conds.active("estimates_disagree")


def test_the_fail_safe_is_not_cleared_by_a_probe_that_gives_no_estimate() -> None:
    blend = _blend()
    blend.disagreement.value = PROBE - FEEDERS
    for now in range(1, 30):
        _judge(blend, float(now), PROBE)
    assert blend.conds.active("estimates_disagree")
    for now in range(30, 600):
        _judge(blend, float(now), None)
    assert blend.conds.active("estimates_disagree")


def test_with_the_fail_safe_holding_the_probes_last_estimate_stays_an_opinion() -> None:
    """Past `nir_hold_s` too: nothing since has said which of the two is wrong. Before, the
    feeders alone judged the blend in spec at 98 % LC; it was at 135 % LC."""
    blend = _blend()
    blend.disagreement.value = PROBE - FEEDERS
    for now in range(1, 30):
        _judge(blend, float(now), PROBE)
    blend.last_nir_value = PROBE
    blend.nir.last_good = blend.tel.newest - 10 * CFG.nir_hold_s
    blend.nir_value = None
    estimate, extra = blend.trusted()
    assert estimate == pytest.approx(PROBE)
    assert extra >= CFG.failsafe_guard_pct + (PROBE - FEEDERS) * LC_PER_WW / 2 - 1e-9


def test_the_feeders_alone_carry_the_doubt_of_a_feed_factor_that_moved() -> None:
    """A feed factor off its usual is a drift the feeder compensates or a load cell drifting,
    whose blend is off by as much: without the probe, the guard band holds the second."""
    blend = _blend()
    _, sure = blend.trusted()
    blend.feeders_doubt = 0.5  # % w/w: what a load cell would make of the feeders' estimate
    estimate, doubtful = blend.trusted()
    assert estimate == pytest.approx(FEEDERS)
    assert doubtful - sure == pytest.approx(0.5 * LC_PER_WW)
    blend.nir_value = 10.0  # the probe tells: the feeders' doubt is no longer the judge's
    _, extra = blend.trusted()
    assert extra < sure


def test_the_feeders_alone_get_a_wider_guard_band_in_an_api_refills_wake() -> None:
    blend = _blend()
    _, quiet = blend.trusted()
    blend.refilled_at[CFG.api_feeder] = blend.tel.newest - 30.0
    _, refilled = blend.trusted()
    assert refilled - quiet == pytest.approx(CFG.refill_feeder_guard_pct)
    blend.refilled_at[CFG.api_feeder] = blend.tel.newest - CFG.refill_window_s - 1.0
    _, later = blend.trusted()
    assert later == pytest.approx(quiet)


def test_a_noisy_feeder_widens_the_feeders_guard_band_past_the_probes() -> None:
    """The feeders' RTD prediction follows the flows they report, not a noisy feeder's swings:
    judged by them, the guard band grows with the noise up to `noise_guard_feeders_max`; judged
    by the probe, which sees the swings, only up to `noise_guard_max` (random campaign 100
    compound, with a 1-s gate lead: x20 noise under 30 % dropout, the feeders' estimate 10 %
    LC off the blend against a 5 % LC band; 14 tablets released)."""
    blend = _blend()
    _, quiet = blend.trusted()
    blend.conds.update(blend.tel.newest, "feeder_noise:excipient_feeder", True, 0.0, "noisy")
    widened = {}
    for ratio in (3.0, 7.0, 20.0):
        blend.noise_ratio = ratio
        _, widened[ratio] = blend.trusted()
    units = [min(r - 1.0, CFG.noise_guard_feeders_max) for r in (3.0, 7.0, 20.0)]
    assert [widened[r] - quiet for r in (3.0, 7.0, 20.0)] == pytest.approx(
        [CFG.noise_guard_pct * u for u in units]
    )
    blend.nir_value = 10.0  # the probe tells: its own band, capped lower
    _, by_probe = blend.trusted()
    assert by_probe == pytest.approx(CFG.noise_guard_pct * CFG.noise_guard_max)
