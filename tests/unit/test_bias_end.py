"""A probe bias believed over on agreement, and its end.

A suspect probe is believed again once it agrees with the feeders for a reconciliation time.
A feeder's own fault can make that agreement: a load cell drifting brings the feeders to the
biased probe. When the bias then ends, the probe steps back by the offset it was believed off
by. That step is the bias's end, not a new probe fault the other way (random campaign 618
compound, outside the seeds the rules were worked out on: a +0.35 % w/w bias believed over as a
+6 % load cell drift brought the feeders to it; its end 5 s later was taken for a new -0.39 %
w/w fault, the blend judged 3.9 % LC too rich, 386 tablets at 94.3-95.0 % LC released).
"""

from __future__ import annotations

from controller import ControllerConfig
from controller.supervisor import Supervisor

FEED_FACTOR = 0.05  # the API feeder's learnt feed factor, steady throughout
OFFSET = 0.35  # % w/w the probe was believed off by, then believed over
QUIET_S = 120  # plant seconds of steady gap before the step


def _suspected_after(step: float, *, believed_over_ago_s: float | None) -> bool:
    """A probe suspected off by `OFFSET` is believed again on agreement `believed_over_ago_s`
    plant seconds before the gap to the feeders steps by `step` % w/w (None: it was never
    suspected). Whether the step makes it suspect again."""
    cfg = ControllerConfig()
    blend = Supervisor(cfg).blend
    if believed_over_ago_s is not None:
        blend.suspect_probe(OFFSET)
        blend.believe_again_on_agreement(QUIET_S - believed_over_ago_s)
    gaps = [0.0] * QUIET_S + [step] * 60
    for second, gap in enumerate(gaps):
        blend._api_feed_factor.append(FEED_FACTOR)
        blend._judge_small_step(float(second), gap)
    return blend.nir_suspect


def test_a_step_back_by_the_offset_believed_over_is_the_bias_ending() -> None:
    assert not _suspected_after(-0.39, believed_over_ago_s=5.0)


def test_the_bias_ending_says_so_once() -> None:
    cfg = ControllerConfig()
    blend = Supervisor(cfg).blend
    blend.suspect_probe(OFFSET)
    blend.believe_again_on_agreement(0.0)
    assert blend.ends_bias_believed_over(5.0, -0.39)
    # Said once: the same step is not the bias ending twice
    assert not blend.ends_bias_believed_over(6.0, -0.39)
    cleared = [a for a in blend.conds.alarms if a.name == "nir_bias" and not a.raised]
    assert len(cleared) == 2 and "bias has ended" in cleared[-1].message


def test_any_other_step_is_a_probe_fault() -> None:
    # Never suspected: a step is a new fault
    assert _suspected_after(-0.39, believed_over_ago_s=None)
    # A step the same way as the offset believed over is a new fault too
    assert _suspected_after(0.39, believed_over_ago_s=5.0)
    # As is one far from its size (explained_share), or long after (believed_over_memory_s)
    assert _suspected_after(-0.9, believed_over_ago_s=5.0)
    memory = ControllerConfig().believed_over_memory_s
    assert _suspected_after(-0.39, believed_over_ago_s=memory + 60.0)
