"""What the controller knows of the product and the equipment: specs and data-sheet figures.

These are the plant's configuration, as an automation engineer would enter them, not the twin's
model parameters: the controller never reads the twin.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    # Product
    label_claim_mg: float = 40.0  # mg of API per tablet
    target_weight_mg: float = 400.0  # mg
    content_low_pct: float = 95.0  # % label claim, spec
    content_high_pct: float = 105.0
    weight_tolerance: float = 0.05  # fraction, spec
    hardness_low_n: float = 70.0  # N, spec
    hardness_high_n: float = 170.0
    # Equipment
    api_feeder: str = "api_feeder"
    other_feeders: tuple[str, ...] = ("excipient_feeder", "lubricant_feeder")
    blender: str = "blender"
    nir: str = "nir"
    feed_frame: str = "feed_frame"
    press: str = "press"
    diverter: str = "diverter"
    line: str = "line"
    stations: int = 36  # punch stations of the press
    blender_tanks: int = 5  # tanks-in-series order of the blender's RTD (from an RTD study)
    blender_speed_rpm: float = 250.0  # validated impeller speed
    blender_speed_max_rpm: float = 400.0
    level_sp_kg: float = 0.25  # feed frame level the rate loop holds
    hardness_sp_n: float = 120.0
    # Diversion
    guard_pct: float = 0.5  # divert predicted content within this of a spec limit (% LC)
    weight_guard: float = 0.01  # and weight within this fraction of a weight limit
    margin_s: float = 4.0  # seconds of press time added before and after a window
    gate_lead_s: float = 3.0  # command the gate this early (actuation and one step)
    gate_confirm_s: float = 4.0  # the gate must report reject within this, or it is stuck
    # Loops: periods, gains, deadbands
    weight_period_s: float = 10.0
    weight_gain_mm_per_mg: float = 0.006
    weight_deadband_mg: float = 1.0
    rate_period_s: float = 10.0
    level_gain: float = 0.5  # fraction of turret speed per kg of level error
    concentration_period_s: float = 15.0
    concentration_gain: float = 0.1  # fraction of the error corrected per period
    concentration_deadband_pct: float = 0.08  # % w/w
    concentration_authority: float = 0.04  # the API trim stays within +-4 % of the recipe
    hardness_period_s: float = 30.0
    hardness_gain_mm_per_n: float = 0.001
    hardness_deadband_n: float = 4.0
    # Detection
    nir_stale_s: float = 8.0  # no good spectrum for this long: NIR unavailable
    nir_step_window_s: float = 30.0  # feeders' movement around a NIR step that explains it
    reconcile_window_s: float = 60.0  # time constant of the NIR-feeder reconciliation
    reconcile_limit_pct: float = 0.3  # % w/w disagreement that calls for a diagnosis
    bridging_stop_s: float = 900.0  # stop the line if the API feeder has not recovered by then
    stale_telemetry_s: float = 10.0  # hold setpoints when telemetry is older than this
    # Fail-safe rules: what the controller does when its own diagnosis runs out.
    # Two independent estimates of the blend (the NIR, and the feeders through the RTD) that
    # disagree by more than their combined uncertainty mean one of them is wrong. Unless one
    # diagnosed fault explains the gap with confirming evidence (a probe step the feeders did
    # not make, of the gap's size; a load-cell drift seen in the feed factor, of the gap's
    # size), the controller cannot know which: it judges the blend by the estimate further from
    # target, widens the guard band by half the disagreement, and raises `estimates_disagree`.
    # Combined uncertainty = sqrt(nir^2 + feeders^2):
    nir_uncertainty_pct: float = 0.1  # % w/w: probe SD 0.05 (Colon 2014) and model error, x2
    feeder_uncertainty_pct: float = 0.25  # % w/w: API flow reading +-2.5 % of a 10 % w/w share
    # (load-cell accuracy, the RTD model's error through a transient)
    failsafe_confirm_s: float = 20.0  # s the disagreement must last: a third of the RTD mean,
    # so a refill's short volumetric blip does not trip it, while 20 s of suspect material
    # is still inside the feed frame (30-60 s) when the gate is told
    failsafe_guard_pct: float = 1.0  # % LC added to the guard band while it holds
    # A line that has diverted for this long is not in a state of control: a transient the
    # RTD can carry is over within five mean residence times (5 min at 60 s) plus the feed
    # frame's minute, and a bridged feeder is given `bridging_stop_s` to recover. Past that,
    # the controller stops the line with the reason instead of diverting product for an hour
    # (GMP: an unexplained, lasting deviation is investigated by people, not run through the
    # reject chute).
    max_divert_s: float = 900.0
    divert_gap_s: float = 30.0  # s at accept that still count as one diversion (flapping gate)
    # The press hopper this low cannot guarantee full dies: a step's draw at 35 rpm is 12 g,
    # so 50 g is about four seconds of tablets; below it the weight is not assured: divert.
    level_low_kg: float = 0.05
    # Start-up material is diverted by the line itself, but the feed frame's content when
    # production begins was blended in start-up's last minute: blend judged out of spec that
    # recently (plus the feed frame's plug-flow delay) is diverted when production begins.
    startup_judge_s: float = 60.0
