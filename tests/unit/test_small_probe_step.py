"""A probe step too small for the spike test is told from the blend's own ramp by its shape.

A probe that fouls or slips steps between two spectra: the gap between the NIR and the feeders
jumps from one level to the other. A load cell drifting moves the blend through the blender's
RTD: the gap ramps, which a mean before against a mean after measures as a step just as well
(random campaigns 109 and 118 compound: taken for a probe's step, the blend was misjudged and
OOS tablets released).
"""

from __future__ import annotations

from controller import ControllerConfig
from controller.supervisor import Supervisor

FEED_FACTOR = 0.05  # the API feeder's learnt feed factor, steady throughout


def _probe_blamed(gaps: list[float], cfg: ControllerConfig) -> bool:
    """Feed the small-step test one gap (NIR less feeders, % w/w) a plant second, the API
    feeder's feed factor steady; whether the probe ends up suspected."""
    blend = Supervisor(cfg).blend
    for second, gap in enumerate(gaps):
        blend._api_feed_factor.append(FEED_FACTOR)
        blend._judge_small_step(float(second), gap)
    return blend.nir_suspect


def _ramp(size: float, ramp_s: int) -> list[float]:
    """Flat at 0 for a minute, a ramp of `size` over `ramp_s`, then flat for a minute."""
    return [0.0] * 60 + [size * s / ramp_s for s in range(ramp_s)] + [size] * 60


def test_a_sharp_step_is_the_probe() -> None:
    assert _probe_blamed(_ramp(0.3, 1), ControllerConfig())


def test_a_ramp_through_the_stretch_between_is_the_blend() -> None:
    ramp = _ramp(0.3, 18)
    # Judged by its means alone (every gap may lie between the levels), the ramp passes for a
    # step: the case this rule is for.
    assert _probe_blamed(ramp, ControllerConfig(small_step_between_share=1.0))
    assert not _probe_blamed(ramp, ControllerConfig())


def test_a_step_of_either_sign_is_judged_alike() -> None:
    assert _probe_blamed([-g for g in _ramp(0.3, 1)], ControllerConfig())
    assert not _probe_blamed([-g for g in _ramp(0.3, 18)], ControllerConfig())
