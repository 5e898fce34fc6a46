"""Fault 9 while the gate diverts on and off: a new lot's density is confirmed on quiet evidence
gathered in pieces.

Weight per mm of fill depth is judged only while the blend is quiet and the gate is not
diverting. The acceptance run's denser excipient lot (+6.5 % weight per mm) made the gate divert
on and off for minutes; each window began the 30 s of confirmation afresh, and the alarm came
390 s after the onset in 3 of 12 in-process runs through the stack's timing (`Link` seeds 1-16)
and not within the fault's 600 s window in one CI run of the stack. Now, while the line diverts
with the blend quiet, a shift of 5 % is a new density (only the weight loop's 2-3 % transients
are in it; a refill or a starved feeder still needs 8 %), and a smaller verdict on its way
waits through a window, its clock stopped, while the shift still says it.
"""

from __future__ import annotations

import math

from controller import ControllerConfig
from controller.detectors import Context
from controller.diversion import Window
from controller.supervisor import Supervisor

DEPTH_MM = 10.0
USUAL_MG_PER_MM = 40.0


def _supervisor() -> Supervisor:
    sv = Supervisor(ControllerConfig())
    sv.shared.depth_pv = DEPTH_MM
    sv.detectors.density.base.value = USUAL_MG_PER_MM
    sv.gate.weights.append(USUAL_MG_PER_MM * DEPTH_MM)
    return sv


def _run(
    sv: Supervisor, start: int, seconds: int, shift: float, diverting: bool, refilled: bool = False
) -> None:
    """`seconds` of decisions, a second apart, with the tablets `shift` heavier per mm."""
    sv.blend.last_refill = start + 10_000.0 if refilled else -math.inf
    sv.gate.weight_mean = USUAL_MG_PER_MM * (1.0 + shift) * DEPTH_MM
    sv.gate.planner.windows = [Window(0.0, 1e9, "weights")] if diverting else []
    for t in range(start, start + seconds):
        ctx = Context(now=float(t) + 10_000.0, dt=1.0, settled=True, steady=True, quiet=True)
        sv.detectors.density.update(ctx, [])


def _raised(sv: Supervisor) -> bool:
    return sv.conds.active("lot_density_change")


def test_a_shift_confirmed_in_pieces_between_windows_is_raised() -> None:
    sv = _supervisor()
    _run(sv, 0, 20, 0.04, diverting=False)  # 20 s quiet evidence
    _run(sv, 20, 40, 0.04, diverting=True)  # the gate diverts: no evidence either way
    assert not _raised(sv)
    _run(sv, 60, 12, 0.04, diverting=False)  # 32 s of quiet evidence in all
    assert _raised(sv), "a +4 % shift seen for 32 quiet seconds, in two pieces, not raised"


def test_a_window_holds_the_clock_it_does_not_run_it() -> None:
    sv = _supervisor()
    _run(sv, 0, 20, 0.04, diverting=False)
    _run(sv, 20, 100, 0.04, diverting=True)  # far longer than the 30 s, but no evidence
    assert not _raised(sv)
    _run(sv, 120, 5, 0.04, diverting=False)  # 25 s quiet in all
    assert not _raised(sv)


def test_a_window_in_which_the_shift_went_away_drops_the_verdict() -> None:
    sv = _supervisor()
    _run(sv, 0, 20, 0.04, diverting=False)
    _run(sv, 20, 5, 0.0, diverting=True)  # the shift is gone while diverting
    _run(sv, 25, 15, 0.04, diverting=False)  # 15 s afresh, not 35
    assert not _raised(sv)
    _run(sv, 40, 16, 0.04, diverting=False)
    assert _raised(sv)


def test_a_new_density_is_raised_while_the_line_diverts_with_the_blend_quiet() -> None:
    sv = _supervisor()
    _run(sv, 0, 31, 0.065, diverting=True)
    assert _raised(sv), "+6.5 % for 31 s while diverting, the blend quiet, not raised"


def test_the_same_shift_after_a_refill_is_not_judged_while_the_line_diverts() -> None:
    sv = _supervisor()
    _run(sv, 0, 100, 0.065, diverting=True, refilled=True)
    assert not _raised(sv)
    _run(sv, 100, 31, 0.085, diverting=True, refilled=True)  # beyond what a blend upset makes
    assert _raised(sv)
