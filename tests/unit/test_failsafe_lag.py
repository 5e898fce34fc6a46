"""Blend judged while the two estimates already disagreed, before the fail-safe confirmed it.

The fail-safe confirms a disagreement between the NIR and the feeders on the gap's one-minute
average, then for `failsafe_confirm_s`: a gap that opens now is confirmed about a minute later,
when the blend judged meanwhile, by the estimate the controller trusted then, is at the dies or
pressed. Random campaign 48 compound, at `margin_s` 4.5: an NIR bias of -2.5 % LC (under the 3 %
LC the generator calls detectable) and a -25 % load-cell drift; the estimates 0.3 % w/w apart
from 17,110 s, the fail-safe raised at 17,172 s, 237 tablets at 105.0-106.6 % LC released. Once
it is raised, that blend is judged again by its rule: diverted if the gate can still be told,
else held back (quarantined) once pressed.

The gate is driven one plant second at a time on telemetry, as in `test_gate_judgement`; the
blend's estimates are set on the controller's own `Blend`, and the fail-safe is raised through
its own condition when the test says (its timing is `check_agreement`'s, tested elsewhere).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from apps.campaign import run_campaign
from apps.random_campaign import random_campaign
from controller import ControllerConfig
from controller.actions import Action
from controller.supervisor import Supervisor
from tests.unit.test_gate_judgement import RATE, _telemetry

CFG = ControllerConfig()
TRANSIT = CFG.level_sp_kg / (RATE / 3600.0 * 400e-6)  # s of plug flow at RATE: 40 s
AGREE_UNTIL, RAISED_AT, END = 60, 100, 220  # plant s
NIR, FEEDERS = 10.35, 9.97  # % w/w while they disagree: 103.5 % LC at 400 mg, in spec alone


def _run(mp: pytest.MonkeyPatch, raise_failsafe: bool) -> tuple[list[Action], list[float]]:
    """The quarantines sent and the seconds the gate was commanded to reject, the estimates
    apart from `AGREE_UNTIL` on and the fail-safe raised at `RAISED_AT` if `raise_failsafe`."""
    sv = Supervisor(CFG)
    blend, gate = sv.blend, sv.gate
    # What `Blend.trusted` gives: the probe alone while the fail-safe does not hold, the worse
    # of the two and its widened band once it does (`trusted`'s own rule, tested elsewhere).
    wide = CFG.failsafe_guard_pct + (NIR - FEEDERS) * 10.0 / 2
    mp.setattr(
        blend,
        "trusted",
        lambda: (NIR, wide) if sv.conds.active("estimates_disagree") else (blend.nir_value, 0.0),
    )
    quarantines: list[Action] = []
    rejects: list[float] = []
    gate_at = "accept"
    for second in range(END):
        now = float(second)
        apart = second >= AGREE_UNTIL
        blend.nir_value, blend.feeders_value = (NIR, FEEDERS) if apart else (10.0, 10.0)
        if raise_failsafe and second == RAISED_AT:
            sv.conds.update(now, "estimates_disagree", True, 0.0, "disagree")
        sv.tel.observe_all(_telemetry(now, 400.0))
        actions: list[Action] = []
        gate.divert(now, actions)
        for action in actions:
            if action.kind == "quarantine":
                quarantines.append(action)
            elif action.target == gate.sp_tag:
                gate_at = str(action.value)
        if gate_at == "reject":
            rejects.append(now)
    return quarantines, rejects


def _held(quarantines: list[Action], press_time: float) -> bool:
    return any(a.value[0] <= press_time <= a.value[1] for a in quarantines)


def test_blend_judged_in_spec_before_the_fail_safe_was_raised_is_not_released(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    quarantines, rejects = _run(monkeypatch, raise_failsafe=True)
    assert quarantines, "nothing held back"
    # Every second of the blend judged while the two were apart and before the fail-safe held
    # (it left the blender `nir_lag_s` before each reading) is held back or diverted at the dies.
    lag = CFG.nir_lag_s
    doubted = [t - lag + TRANSIT for t in range(AGREE_UNTIL, RAISED_AT)]
    loose = [t for t in doubted if not _held(quarantines, t) and round(t) not in rejects]
    assert not loose, (loose, [a.value for a in quarantines])
    # What was judged while they agreed is not held: the windows begin within a margin of it.
    first = AGREE_UNTIL - lag + TRANSIT
    assert min(a.value[0] for a in quarantines) >= first - CFG.margin_s - 1.0
    # Held once pressed, not before: a window the plant cuts at its own present holds nothing
    # of what comes after.
    assert all(a.value[1] <= END for a in quarantines)


def test_a_disagreement_the_fail_safe_never_confirms_holds_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    quarantines, rejects = _run(monkeypatch, raise_failsafe=False)
    assert not quarantines
    assert not rejects


def test_the_doubt_is_judged_by_the_fail_safes_rule() -> None:
    """The estimate further from target, the band widened by half the gap (% LC)."""
    blend = Supervisor(CFG).blend
    blend.nir_value, blend.feeders_value = NIR, FEEDERS
    worst, band = blend.unconfirmed(NIR, 0.25) or (None, None)
    assert worst == NIR
    assert band == pytest.approx(0.25 + CFG.failsafe_guard_pct + (NIR - FEEDERS) * 10.0 / 2)
    blend.feeders_value = NIR - 0.9 * blend.failsafe_limit  # within their combined uncertainty
    assert blend.unconfirmed(NIR, 0.25) is None


def test_random_campaign_48_compound_at_a_wider_margin_releases_nothing() -> None:
    """The whole plant: the campaign the rule is for, at the `margin_s` (4.5 s) that released
    237 tablets at 105.0-106.6 % LC before it. What the fail-safe's lag let through is held."""
    campaign = random_campaign(48, compound=True)
    config = replace(ControllerConfig(), margin_s=4.5)
    ledger = run_campaign(campaign.scenario, controlled=True, config=config).plant.ledger
    assert ledger.oos_accepted_tablets == 0
    assert ledger.oos_quarantined_tablets > 200
