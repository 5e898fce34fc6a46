"""A probe bias believed over on agreement, and its end.

A suspect probe is believed again once it agrees with the feeders for a reconciliation time.
A feeder's own fault can make that agreement: a load cell drifting brings the feeders to the
biased probe. When the bias then ends, the probe steps back by the offset it was believed off
by. With the API feeder's feed factor off its usual by as much, that step is the bias's end,
not a new probe fault the other way (random campaign 618 compound, outside the seeds the rules
were worked out on: a +0.35 % w/w bias believed over as a +6 % load cell drift brought the
feeders to it; its end 5 s later was taken for a new -0.39 % w/w fault, the blend judged 3.9 %
LC too rich, 386 tablets at 94.3-95.0 % LC released). With nothing to doubt the feeders by, the
bias had ended unseen, and a step back by it is a new fault.
"""

from __future__ import annotations

from apps.closed_loop import LoopLog, run
from controller import ControllerConfig
from controller.supervisor import Supervisor
from core.faults import FaultSpec
from twin import Plant

FEED_FACTOR = 0.05  # the API feeder's learnt feed factor, steady throughout
OFFSET = 0.35  # % w/w the probe was believed off by, then believed over
QUIET_S = 120  # plant seconds of steady gap before the step
DOUBT = 0.37  # % w/w the feeders may be off by, from the API feeder's feed factor (618c)


def _suspected_after(
    step: float, *, believed_over_ago_s: float | None, doubt: float = DOUBT
) -> bool:
    """A probe suspected off by `OFFSET` is believed again on agreement `believed_over_ago_s`
    plant seconds before the gap to the feeders steps by `step` % w/w (None: it was never
    suspected), the feeders' estimate in `doubt` % w/w. Whether the step makes it suspect
    again."""
    cfg = ControllerConfig()
    blend = Supervisor(cfg).blend
    blend.feeders_doubt = doubt
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
    blend.feeders_doubt = DOUBT
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
    # And one with nothing to doubt the feeders by: they agreed because the bias had ended
    assert _suspected_after(-0.39, believed_over_ago_s=5.0, doubt=0.0)


def test_a_new_bias_after_one_that_ended_unseen_is_a_probe_fault() -> None:
    """A +0.35 % w/w bias ends under 95 % dropout, unseen: the probe is believed again on
    agreement. A -0.35 bias 400 s later is a new probe fault, found as it steps (taken for the
    first one's end, it was left to the reconciliation, 150 s later, and the fail-safe
    diverted 3.7 kg of good tablets where 0.7 kg did)."""
    plant = Plant(seed=2, warm_start=True)
    plant.inject(FaultSpec("nir_bias", magnitude=0.35, duration_s=400, onset_s=300))
    plant.inject(FaultSpec("nir_dropout", magnitude=0.95, duration_s=300, onset_s=550))
    supervisor, log = Supervisor(), LoopLog()
    run(plant, supervisor, 1000.0, log=log)
    cleared = [a for a in log.alarms if a.name == "nir_bias" and not a.raised]
    assert cleared and "agrees with the feeders again" in cleared[-1].message
    plant.inject(FaultSpec("nir_bias", magnitude=-0.35, duration_s=600, onset_s=1300))
    run(plant, supervisor, 2200.0, log=log)
    raised = [a for a in log.alarms if a.name == "nir_bias" and a.raised and a.time > 1300]
    assert raised and raised[0].time < 1360 and "stepped" in raised[0].message
    assert plant.ledger.mass_diverted_on_command < 1.5
    assert plant.ledger.oos_accepted_tablets == 0
