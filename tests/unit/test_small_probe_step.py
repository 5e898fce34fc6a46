"""A probe step too small for the spike test is told from the blend's own ramp by its shape.

A probe that fouls or slips steps between two spectra: the gap between the NIR and the feeders
jumps from one level to the other. A load cell drifting moves the blend through the blender's
RTD: the gap ramps, which a mean before against a mean after measures as a step just as well
(random campaigns 109 and 118 compound: taken for a probe's step, the blend was misjudged and
OOS tablets released). And a probe can step while the blend ramps (random campaign 146
compound: +0.39 % w/w while a load cell's drift made the blend leaner; unseen, 555 tablets at
94.8-95.0 % LC released).
"""

from __future__ import annotations

import math
import random

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
    ramp = _ramp(0.3, 22)
    # Judged by its means alone (every gap may lie between the levels), the ramp passes for a
    # step: the case this rule is for.
    assert _probe_blamed(ramp, ControllerConfig(small_step_between_share=1.0))
    assert not _probe_blamed(ramp, ControllerConfig())


def test_a_step_of_either_sign_is_judged_alike() -> None:
    assert _probe_blamed([-g for g in _ramp(0.3, 1)], ControllerConfig())
    assert not _probe_blamed([-g for g in _ramp(0.3, 22)], ControllerConfig())


def _leaning(slope: float, step: float, noise: float = 0.0, seed: int = 0) -> list[float]:
    """The gap falling at `slope` % w/w a second for 400 s (a load cell's drift making the
    blend leaner than the feeders say), the probe stepping by `step` at 200 s, with the NIR
    median's noise (SD `noise`)."""
    rng = random.Random(seed)
    return [-slope * t + (step if t > 200 else 0.0) + rng.gauss(0.0, noise) for t in range(400)]


def test_a_step_while_the_blend_ramps_is_the_probe() -> None:
    # Measured against the ramp carried on, not against the mean before it
    assert _probe_blamed(_leaning(0.005, 0.35), ControllerConfig())
    assert _probe_blamed(_leaning(0.01, 0.3), ControllerConfig())


def test_a_ramp_that_bends_or_eases_is_no_step() -> None:
    cfg = ControllerConfig()
    for slope in (0.003, 0.008, 0.012):
        bent = [-slope * t for t in range(100)]
        assert not _probe_blamed(bent + [bent[-1]] * 80, cfg)
    # The RTD's response to a step of the feed: two tanks in series, 40 s each
    eased = [0.0] * 60 + [1.0 - math.exp(-t / 40) * (1 + t / 40) for t in range(300)]
    assert not _probe_blamed(eased, cfg)


def test_a_noisy_ramp_is_no_step() -> None:
    cfg = ControllerConfig()
    for seed in range(10):
        assert not _probe_blamed(_leaning(0.006, 0.0, noise=0.035, seed=seed), cfg)
