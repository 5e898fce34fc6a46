"""What the controller knows of the product and the equipment, and every threshold it acts on.

These are the plant's configuration, as an automation engineer would enter them, not the twin's
model parameters: the controller never reads the twin. Every figure carries its unit and the
reason for its value; (est.) marks an engineering estimate to be confirmed on the real line.
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
    nir_period_s: float = 2.0  # s between spectra (the probe's data sheet)
    residence_default_s: float = 60.0  # s, the RTD study's mean residence time at 20 kg/h: used
    # until the blender reports its own
    turret_min_rpm: float = 11.0  # rpm, the press's range (Natoli NP-400)
    turret_max_rpm: float = 35.0
    # Diversion
    guard_pct: float = 0.5  # divert predicted content within this of a spec limit (% LC)
    weight_guard: float = 0.01  # and weight within this fraction of a weight limit
    hardness_guard_n: float = 5.0  # and hardness within this of a hardness limit (N): the
    # checkweigher's hardness reading has a 2 % RSD, 2.4 N at 120 N; 5 N is two of them
    margin_s: float = 4.0  # seconds of press time added before and after a window
    judge_ahead_s: float = 2.0  # s: the blend on its way to the dies is judged at the tablet
    # weight this long before the gate must be told of it (its arrival less the margin and
    # the gate's lead): two decisions in lockstep, so one late decision still commands it
    judge_weight_moved: float = 0.005  # fraction of target: it is judged at the weight then
    # when the mean of ten has moved this far since the blend left the blender (2 mg: 2.7 SDs
    # of the difference of two means of ten at the checkweigher's 0.4 % RSD; 0.5 % LC)
    # Telemetry further behind the plant than this (plant s; the adapter's estimate, after a
    # stall): no accept is sent, as it would land on tablets not yet judged. A reject is.
    behind_hold_s: float = 10.0
    gate_lead_s: float = 3.0  # command the gate this early (actuation and one step)
    gate_confirm_s: float = 4.0  # the gate must report reject within this, or it is stuck
    mean_of_tablets: int = 10  # tablets averaged for weight and hardness: a 0.4 % RSD
    # checkweigher reads 0.13 % over ten, well inside a 1 % guard
    weight_trend_s: float = 20.0  # s of plant time of weight readings the weight's trend is
    # fitted to: a density step ramps the weight over 30-60 s (the RTD's spread), the
    # checkweigher's 0.4 % RSD averages out over ten or more readings
    weight_trend_from: float = 0.01  # fraction of target: the trend is fitted only once the
    # newest weight is this far off target (2.5 checkweigher SDs, a quarter of the way to the
    # guard band): a ramp toward the limit passes there first, and the fit costs CPU
    weight_trend_min: int = 6  # readings at least in that span (one every 2.5 plant s at 50x)
    weight_trend_sigmas: float = 2.0  # the trend's rise over the horizon must beat its own
    # standard error this many times (95 %): a flat weight's noise fits slopes too
    hardness_trend_from_n: float = 20.0  # N: the hardness's trend (over the weight's span,
    # readings and sigmas) is fitted only once the newest reading is this far off its
    # setpoint: eight reading SDs (2.4 N), 25 N short of either guard limit (75 and 165 N); a
    # ramp toward a limit passes there first, and the fit costs CPU
    weight_step: float = 0.01  # fraction: the newest weight this far off the mean of ten is a
    # step (a slip, a density change), 2.5 checkweigher SDs: the blend at the dies is judged
    # again at it
    tablets_kept: int = 30  # weight and hardness readings kept (the hardness loop's average)
    nir_lag_s: float = 2.0  # s: a spectrum describes powder one reading period old
    nir_lead_min_pct: float = 0.08  # % w/w the newest spectrum must lead the median by to count:
    # 1.6 probe SDs (0.05), about one spectrum of a refill's ramp (0.035 % w/w a second)
    nir_lead_max_pct: float = 0.5  # % w/w: the newest spectrum leads the median by at most the
    # spike test's width (a reading further off is set aside anyway)
    noise_guard_pct: float = 0.5  # % LC more guard band while a feeder is noisy, per unit of
    # its noise above its usual and at least this (its blend varies faster than the NIR's
    # median of three can follow, the more so the noisier)
    noise_guard_max: float = 1.0  # ...up to this many times it when the probe judges the
    # blend: it sees the swings, and its own spread widens the band beyond this when they are
    # large (`blend_spread_guard`). Measured near a limit (a prediction within 3 % LC of one,
    # random campaigns 1-60), the true content beyond the prediction under x4-32 noise: 0.76-
    # 0.84 % LC at the 99th percentile, 1.1 at the 99.9th. Capped at 3 (2.0 % LC with the
    # guard), seeds 1-165 diverted 1.529x the true OOS mass, at 2 1.483x, at 1 1.444x, none
    # releasing a tablet; at 2 and 1 only because the fail-safe's lag is held back
    # (`Gate._judge_doubted`: 278 tablets at 105 % LC in random campaign 48 compound)
    noise_guard_feeders_max: float = 10.0  # ...and up to this many times it when the blend is
    # judged by the feeders while the probe gives no estimate: their RTD prediction follows
    # the flows the feeders report, not a noisy feeder's swings. Measured against the true
    # blend while a feeder was noisy (random campaigns 1-40), the feeders' error, 95th and 99th
    # percentiles: 1.5 and 4.3 % LC at x4-8, 3.4 and 5.6 at x8-16, 7.2 at x16-32 (the probe's:
    # 1.0-1.8 and 1.5-3.4 at any noise): about 0.5 % LC per unit. Past x10 the band (4.5 % LC
    # and the feeders' own) is wider than half the spec: all they judge is diverted (random
    # campaign 100 compound, with a 1-s gate lead: x20 noise under 30 % dropout, the feeders'
    # estimate 10 % LC off the blend against a 5 % LC band; 14 tablets released)
    blend_spread_guard: float = 2.0  # x the blend's own SD (the NIR's spread about its running
    # median beyond the probe's uncertainty) added to the guard band: two SDs of a blend that
    # varies faster than its median follows
    dropout_guard_pct: float = 0.5  # % LC more guard band while NIR spectra drop out: with a
    # share of them lost the median is a spectrum or two older (random campaign 23: a blend at
    # 94.8-95.0 % LC read 95.5+ under 50 % dropout, 112 tablets released)
    feeder_guard_pct: float = 1.0  # % LC more guard band when judging by the feeders alone
    # (their RTD prediction's error through a transient, about 0.1 % w/w)
    refill_feeder_guard_pct: float = 2.0  # % LC more again within `refill_window_s` of an API
    # refill: the refilling feeder reads its volumetric estimate, blind to part of the
    # refill's bump. Measured, the feeders' estimate against the true blend, largest per
    # refill: up to 2.6 % LC (random campaigns 1, 3, 5, 7), 3.4 in 447, where a refill under
    # 89 % NIR dropout, judged within 1.5 % LC, released 42 tablets at 105 % LC
    # Loops: periods, gains, deadbands
    weight_period_s: float = 10.0
    weight_gain_mm_per_mg: float = 0.006
    weight_deadband_mg: float = 1.0
    fill_depth_step_mm: float = 0.002  # mm: smaller fill-depth changes are not worth a command
    fill_depth_min_mm: float = 7.0  # mm, the press's fill-depth range (Natoli NP-400 tooling)
    fill_depth_max_mm: float = 13.0
    fill_depth_max_step_mm: float = 0.3  # mm one weight correction may move the fill depth:
    # 12 mg at 40 mg/mm, inside the 20-mg tolerance, so no single outlying mean weight can move
    # tablets made at target out of spec
    main_gap_min_mm: float = 2.0  # mm, the main compression's punch-gap range
    main_gap_max_mm: float = 6.0
    main_gap_max_step_mm: float = 0.05  # mm one hardness correction may move the gap: the
    # gain's answer to a 50-N error, so one outlying hardness reading cannot move it far
    main_gap_step_mm: float = 0.002  # mm: smaller gap changes are not worth a command
    speed_step_rpm: float = 2.0  # rpm: smaller impeller changes are not worth a command (under
    # 1 % of the validated speed, inside the tachometer's own scatter)
    concentration_max_step: float = 0.05  # fraction of the API setpoint one trim may move: a
    # 0.5 % w/w step of the blend, which the NIR sees within a residence time before the next
    api_step_kgh: float = 0.001  # kg/h: smaller API setpoint changes are not worth a command
    rate_period_s: float = 10.0
    level_gain: float = 0.5  # fraction of turret speed per kg of level error
    level_integral_gain: float = 0.003  # 1/(kg s): slow integral on the level error, so a
    # turret that runs off its setpoint is rebalanced within minutes
    level_integral_limit: float = 0.2  # fraction of turret speed the integral may add
    turret_step_rpm: float = 0.05  # rpm: smaller turret changes are not worth a command
    concentration_period_s: float = 15.0
    concentration_gain: float = 0.1  # fraction of the error corrected per period
    concentration_deadband_pct: float = 0.08  # % w/w
    concentration_authority: float = 0.04  # the API trim stays within +-4 % of the recipe
    concentration_excursion: float = 0.15  # the trim leaves a blend more than 15 % off target
    # to diversion: that is a transient, not an offset to trim
    concentration_step_kgh: float = 0.001  # kg/h: smaller API trims are not worth a command
    nir_slow_s: float = 30.0  # s, time constant of the NIR average the trim acts on
    bridge_settle_s: float = 300.0  # s after a bridge collapses before the trim acts again
    # (five RTD means: the blend is back to steady)
    drive_saturated_pct: float = 95.0  # % drive above which a feeder cannot follow a trim
    hardness_period_s: float = 30.0
    hardness_gain_mm_per_n: float = 0.001
    hardness_deadband_n: float = 4.0
    hardness_samples: int = 20  # readings before the hardness loop acts
    speed_period_s: float = 10.0  # s between impeller speed checks (drive response 2 s)
    # A blender whose impeller comes back to speed after a slowdown (or restarts after a trip
    # with a slow impeller's hold-up) passes its extra hold-up on in seconds: random campaign 3
    # dumped 0.85 kg within 18 s into a feed frame holding 0.33 of its 1.0 kg, which
    # overflowed and tripped the line, and every restart tripped again on it. While the
    # blender passes more than this share of the feed, its impeller is held down so that it
    # passes about that much, and brought back slowly once it passes less:
    drain_flow_ratio: float = 1.3  # x the feed: 26 kg/h at 20, which the press takes at 30 of
    # its 35 rpm; an ordinary refill's bump (6-12 %) or a disturbed one (up to 10 % of the
    # blend: the API is a tenth of it) stays below it
    drain_ramp_rpm_s: float = 1.5  # rpm/s the impeller is brought back at: 100 to 250 rpm in
    # under two minutes (random campaign 3: 0.85 kg drained in 4.5 min, the frame at most
    # 0.65 kg)
    drain_step_rpm: float = 4.0  # rpm: smaller impeller changes while it drains are not worth
    # a command (each is an audit entry); the drive (2 s) follows a step well inside the
    # slowdown test's 10 s confirmation
    blender_speed_min_rpm: float = 100.0  # rpm, the bottom of the impeller setpoint's range
    drain_drive_min: float = 0.1  # a slow drive's speed per rpm of setpoint is read as no less
    # than this while it drains (the catalogue's slowdown goes to 90 %: 0.1); a drive still
    # ramping after a step reads low for a few seconds and is asked for a little more meanwhile
    load_cell_max_compensation: float = 0.15  # the API setpoint follows a drifting load cell
    # by at most 15 %: beyond that the feeder is out of calibration, and diversion and the
    # fail-safe take over
    load_cell_follow: float = 0.01  # the compensation follows the drift in 1 % steps
    # Detection
    nir_stale_s: float = 8.0  # no good spectrum for this long: NIR unavailable
    nir_median_of: int = 3  # spectra in the robust median: one spike among three is outvoted,
    # and the median lags a real ramp by one spectrum (2 s) only
    nir_spike_pct: float = 0.5  # % w/w a spectrum may stand off the median before it is set
    # aside: ten probe SDs (0.05), while the blender's RTD moves a real blend a few hundredths
    # between two spectra (more on a fast ramp: `nir_spike_allowance`)
    nir_step_count: int = 4  # set-aside spectra agreeing within half the spike width that make
    # a probe step (8 s): fewer, and two spikes of a noisy feeder's blend could
    nir_restart_s: float = 60.0  # s without a good spectrum before the median starts afresh:
    # one mean residence time, after which the blend owes nothing to the last one seen
    nir_gap_spectra: float = 1.5  # periods between two readings' source times beyond which
    # the spectra between them were lost (telemetry jitters by under half a period)
    nir_hold_s: float = 60.0  # s the last NIR estimate stays a second opinion beside the
    # feeders once the probe is unavailable: one mean residence time, within which the blend
    # at the outlet cannot have moved far from it
    nir_step_window_s: float = 30.0  # feeders' movement around a NIR step that explains it
    nir_step_explained: float = 0.3  # a step is the blend when the feeders moved 30 % of it
    nir_spike_allowance: float = 3.0  # x what the feeders' prediction moves between spectra
    # that a reading may move before it is a spike
    # A probe step smaller than the spike test sees (fouling, a recalibration slip): the NIR
    # less the feeders' estimate, its mean over the last seconds against the stretch before
    # (its mean, or its line carried on when it ramps), and sharp (`small_step_between_share`).
    small_step_pct: float = 0.25  # % w/w: five times the probe's SD (0.05), fifteen times that
    # of a mean of ten spectra; the smallest bias the random campaigns score (0.5 % LC x 6 =
    # 0.3 % w/w) passes it
    small_step_recent_s: float = 10.0  # s of gap averaged after the step (five spectra)
    small_step_gap_s: float = 20.0  # s left out between the two: the median of three and the
    # RTD's fastest real ramp (a refill's) show within them
    small_step_before_s: float = 30.0  # s of gap before, in two halves: agreeing within a
    # quarter of the step, the step is measured against their mean; else against the line
    # through them, as a probe can step while the blend ramps (a load cell's, a drift's ramp
    # is no step: against its line it fails the sharpness)
    small_step_min_readings: int = 5  # gaps at least in each of the three stretches: a mean of
    # five spectra has under half the probe's SD, a step of 0.25 % w/w stands ten of those clear
    small_step_feed_factor_range: float = 0.04  # fraction: the API feeder's learnt feed
    # factor must stay within this over the last minute (its own noise spans 2-3 %; a load
    # cell drifting enough to step the blend by 0.25 % w/w in half a minute moves it 5 % and
    # more)
    step_back_feed_factor_range: float = 0.02  # fraction: and within this for a suspect
    # probe's step back by its offset, which a load cell's drift can mimic (random campaign
    # 48 compound: 3 % in the minute before; a probe's bias ending: 1.2 %, campaign 16)
    small_step_confirm_s: float = 10.0  # s it must hold as the window slides: a ramp's
    # "step" grows or shrinks as it moves through the stretches, a probe's holds its size
    small_step_between_share: float = 0.4  # of the gaps in the stretch left out between the
    # two, the share that may lie between the levels before and after (over a quarter of the
    # step from both): a probe's step leaves there only the median of three's transition, a
    # spectrum or two (random campaign 16 compound, -0.48 % w/w: at most 4 of 20 decisions);
    # the RTD's ramp of a drifting load cell half of them and more (campaigns 109 and 118
    # compound: 10-17 of 20)
    reconcile_window_s: float = 60.0  # time constant of the NIR-feeder reconciliation
    reconcile_limit_pct: float = 0.3  # % w/w disagreement that calls for a diagnosis
    # A gap between the two estimates that lasts, under both limits above, is a calibration
    # one of them has lost and nothing tells which (an NIR bias of 2 % LC is undetectable:
    # `apps.random_campaign`). Within a refill's window of any feeder the refilling one reads
    # its volumetric estimate, blind to the densified powder's flow, and the two estimates
    # agree by accident: the probe read on the feeders' calibration (the probe less the gap
    # averaged up to the refill) is then a second opinion wherever it is the worse of the
    # two (random campaign 532, outside the seeds the rules were worked out on: a +0.20 %
    # w/w bias, the content loop holding the blend at 98 % LC on it, then an excipient
    # refill's dip; blend at 94 % LC read 95.6 by the probe and 96 by the feeders, 266
    # tablets released). Outside refills it is not needed, the feeders seeing what moves the
    # blend, and judged so throughout, seeds 1-165 diverted 1.1 % more (1,850 -> 1,870 kg).
    calibration_gap_min_pct: float = 0.1  # % w/w: the reconciliation's averaged gap when
    # the refill began, if under this, is the two estimates' own agreement (the probe's
    # model error, the feeders' accuracy), not a lost calibration
    bridging_stop_s: float = 900.0  # stop the line if the API feeder has not recovered by then
    stale_telemetry_s: float = 10.0  # hold setpoints when telemetry is older than this
    settle_s: float = 300.0  # s of production before detectors that learn a baseline judge
    # (five RTD means: start-up transients are over)
    bridging_drive_pct: float = 99.0  # % drive: the feeder gives all it has
    bridging_flow_share: float = 0.9  # and delivers less than this share of its setpoint
    # (its own flow noise is 2 %: 10 % short at full drive is no noise)
    bridging_fall: float = 0.08  # or its learnt feed factor fell this much (fraction)...
    bridging_fall_window_s: float = 60.0  # ...within this: the fastest bulk-density drift
    # (1/h) moves it 1.7 % in 60 s, its own noise about 1 % (x3); a bridge forms in seconds
    # and is learnt in 30 s
    bridging_fall_hold_s: float = 600.0  # s a fall the drive copes with is reported as a bridge
    # when it does not come back; past that, the lower feed factor is the new normal (a
    # bridge that starves the feeder stays reported by the full-drive test)
    bridging_confirm_s: float = 5.0  # s: a bridge does not come and go in a second
    steady_after_bridge_s: float = 600.0  # s after a bridge before feeder statistics count
    quiet_after_refill_s: float = 300.0  # s after a refill before feeder statistics count
    # (the densified powder's feed factor settles in five 60-s decays)
    feed_factor_base_s: float = 1800.0  # s, the learnt feed factor's long-run average (the
    # bridging test's usual level, and the drift's reference until the curve below has one)
    feed_factor_fast_s: float = 120.0  # s, and its recent average: drift = the recent average
    # against the feed-factor curve at the hopper mass now
    feed_factor_curve_s: float = 7200.0  # s, the time constant of the feed-factor curve (its
    # feed factor against hopper mass): a refill cycle of the API feeder is 1.5 h (3 kg at
    # 2 kg/h), over which the feed factor falls some 5 % as the hopper empties
    feed_factor_curve_span_kg: float = 0.3  # kg, SD of the hopper mass the curve needs for a
    # slope (a third of a refill cycle)
    explained_share: float = 0.5  # a feeder signal explains a NIR gap to within half of it
    believed_over_memory_s: float = 1800.0  # s a probe offset believed over on agreement alone
    # is remembered: a step back by it within this, with the feeders in doubt by as much, is
    # that bias's end, not a new probe fault (a feeder's fault can bring the feeders to a
    # biased probe; the catalogue's probe faults last up to half an hour). Later, a step back
    # by it is judged as any step is
    probe_feed_factor_limit: float = 0.02  # the NIR is blamed only if the feed factor moved
    # less than this (fraction): 2x its 1 % spread
    nir_disagrees_confirm_s: float = 60.0  # s, one reconciliation time constant
    load_cell_change: float = 0.02  # fraction of feed factor a drifting load cell shows
    load_cell_confirm_s: float = 30.0  # s
    retare_jump_kg: float = 0.005  # kg the API hopper's reading may move in one decision
    # between refills, beyond what the feeder feeds (0.6 g a second), before it counts as
    # re-tared
    retare_relearn_s: float = 300.0  # s after a re-tare within which the compensation follows
    # the feeder relearning its feed factor: a gravimetric feeder relearns in a minute or two
    # (the twin's 30-s time constant: a 15 % error within 1 % in 80 s), a refill may hold it
    feed_factor_drift_change: float = 0.03  # fraction: 6x the recent average's spread about
    # the feed-factor curve (0.5 % on fault-free runs, at most 1.75 %; against a long-run
    # average, which the hopper's emptying moves, it was 1.4 % and up to 4.4 %)
    feed_factor_drift_confirm_s: float = 60.0  # s, half the fast average's time constant: the
    # curve, not the confirmation, keeps the hopper's emptying out
    # A fast drift outruns the recent average (its 120 s lag, then a minute's confirmation:
    # 5 min at 1 %/min). The learnt feed factor itself, against the curve, is summed beyond an
    # allowance (a CUSUM, Page 1954), upward and downward apart:
    feed_factor_cusum_allowance: float = 0.025  # fraction: 2.5 SDs of the learnt feed
    # factor about its curve on fault-free stretches (1.0-1.1 %: its 30-s learning on 2 % flow
    # noise)
    feed_factor_cusum_limit: float = 1.5  # fraction x s the sum must pass: on the fault-free
    # stretches of random campaigns 1-6, 13 and 54 it reached at most 0.64; a drift of
    # 1.25 %/min (0.75 /h) passes it three to four minutes after onset, 0.1 /h in 20 minutes
    feed_factor_cusum_quiet_s: float = 150.0  # s after an API refill or a feed-factor step
    # before the sums gather again: the densified powder's 4 % decays with 60 s (0.3 % left,
    # an eighth of the allowance) and the learnt feed factor settles in 30 s; the recent
    # average's 300 s would hide most of a short drift that a refill interrupts (random
    # campaign 17: a 0.55 /h drift with a refill in its middle, over before it was quiet)
    feed_factor_cusum_confirm_s: float = 30.0  # s with the NIR agreeing with the feeders: a
    # load cell's drift moves the feed factor the feeder seems to have as fast as a fast
    # drift, and its gap shows in the NIR within the RTD's half-minute
    dropout_raise: float = 0.15  # share of spectra lost or spiky that raises nir_dropout
    dropout_clear: float = 0.05  # and below which it clears (hysteresis: 60-spectra counts)
    dropout_confirm_s: float = 10.0  # s, five spectra
    flow_window: int = 300  # s of flow readings in a feeder's noise statistic (and readings
    # a feeder must have given before it is judged): its median
    # absolute value, so a transient shorter than half of it hardly counts (random campaigns:
    # an SD over it took a lot density change or a drift's end for noise, 91 false alarms)
    noise_ratio: float = 1.7  # x its usual noise that calls a feeder noisy
    flow_detrend_s: float = 20.0  # s: the noise is the flow less its own 20-s average, so the
    # slow excursions of a bridge, a drift or a refill (a minute and more) are not noise,
    # while feeder noise (10-s correlation) mostly is
    noise_confirm_s: float = 20.0  # s
    noise_base_s: float = 1200.0  # s, time constant of a feeder's usual RSD
    impeller_share: float = 0.95  # impeller below this share of its setpoint is slowing down
    impeller_confirm_s: float = 10.0  # s, five drive time constants
    turret_offset_rpm: float = 0.3  # rpm off its setpoint: the turret drive is off
    turret_confirm_s: float = 10.0  # s, the drive's 2 rpm/s ramp over 20 rpm
    stiction_mm: float = 0.02  # mm between fill-depth setpoint and position: sticking
    stiction_confirm_s: float = 30.0  # s, the actuator moves 0.2 mm/s: it had time
    stiction_deadband_mg: float = 6.0  # mg, the weight loop's deadband while it sticks
    # A sticking fill depth that slips makes heavier (or lighter) tablets at the same punch
    # gap, and so harder (or softer) ones: Ryshkewitch-Duckworth, H = Hmax exp(-k porosity)
    # with porosity 1 - solid fraction, and the solid fraction in proportion to the weight at
    # a fixed gap, gives d ln H = k x solid fraction x dW/W. k 8 (the compaction study's) and
    # a solid fraction of 0.9, the hardest tablet in spec's (0.85 at the 120-N target), make
    # 7.2: a slip's hardness is not underestimated anywhere in spec (random campaign 512
    # compound, outside the seeds the rules were worked out on: a setpoint kept where a slip
    # stayed inside the weight guard, 389 -> 416 mg, took the hardness from 118 to 188 N, 43
    # tablets over 170 N released).
    hardness_weight_slope: float = 7.2
    # A sticking actuator shows only when it is asked to move, and the weight loop, on target,
    # asks for moves smaller than the mismatch above (random campaigns 1-30: 7 bands of
    # 0.2-0.9 mm never seen). One left still this long is stroked, as a valve is
    # partial-stroke tested, and put back once it has followed or the test has had time:
    stroke_idle_s: float = 300.0  # s the fill-depth actuator may sit still before a stroke
    stroke_mm: float = 0.05  # mm: the smallest band worth finding (0.05 mm, where it shows
    # beside the weight loop's own steps) holds it; 2 mg of weight, a fifth of the weight
    # guard, for the second the actuator takes to follow
    density_shift: float = 0.02  # fraction of weight per mm of fill depth: a new density
    density_shift_disturbed: float = 0.08  # fraction of weight per mm that is a new density
    # even while the blend is disturbed or the line diverts: the API (0.35 g/cm3) is a tenth
    # of the blend's mass and the excipient 0.55 g/cm3, so a bridge that takes all the API out
    # moves the blend's bulk density 5 %, a refill's bump or a load cell's drift far less; the
    # weight loop's own transients (ten tablets' weight against the fill depth now) add 2-3 %
    density_shift_diverting: float = 0.05  # fraction of weight per mm that is a new density
    # while the line diverts, the blend quiet (no refill or starved feeder lately): only the
    # weight loop's transients, 2-3 %, are in it (the acceptance run's denser lot, +6.5 %,
    # kept the gate diverting on and off for 280 s after its onset in process, and its
    # alarm, judged by the 8 % limit, came after the fault's 600 s window in one CI run)
    density_confirm_s: float = 30.0  # s, three weight-loop periods
    density_base_s: float = 1800.0  # s, time constant of the usual weight per mm
    wear_mm: float = 0.02  # mm thicker than the punch gap explains: wear
    wear_confirm_s: float = 60.0  # s
    wear_base_s: float = 3600.0  # s, time constant of the usual thickness per mm of gap
    refill_window_s: float = 240.0  # s after a refill in which its flow bump is judged and its
    # diversion is the refill's (the refill, its volumetric hold, and the RTD's tail)
    refill_clear_s: float = 60.0  # s without a diversion before the refill alarm clears
    refill_peak_window_s: float = 120.0  # s after a refill in which its flow bump is measured
    # (volumetric hold, then the feed factor relearnt in 30-s steps)
    refill_spike: float = 0.16  # flow 16 % off its setpoint after a refill is no ordinary
    # refill's: densified powder and a full hopper give 6-12 % (est., measured on the twin's
    # refills), the flow noise 2-5 %
    feeder_history: int = 600  # feeders' predictions kept (s) to judge NIR steps by
    # The decision clock
    max_dt_s: float = 10.0  # s: a longer gap between decisions is counted as this much
    detector_period_s: float = 1.0  # s between two runs of the fault detectors (at least one
    # decision). A slower scan than the blend's, gate's and loops' would save their CPU (half
    # the decision's: 2 s made the closed loop 17 % faster, bench.closed_loop), but it moves
    # every campaign's trajectory, and at 2 s random campaign 12 compound released 42 tablets
    # at 94.99 % LC (a 1.4 % LC NIR bias, too small to diagnose, against a 0.5 % LC guard
    # band): kept at every decision until that margin is understood
    interval_forget: float = 0.98  # per decision: how fast a long telemetry interval is
    # forgotten (quickly raised, slowly forgotten: 50 decisions to halve)
    latency_forget: float = 0.95  # per command: the same for the command round trip
    effect_timeout_s: float = 120.0  # s: a setpoint not shown in telemetry by then was refused
    # or overwritten; it times nothing
    # Fail-safe rules: what the controller does when its own diagnosis runs out.
    # Two independent estimates of the blend (the NIR, and the feeders through the RTD) that
    # disagree by more than their combined uncertainty mean one of them is wrong. Unless one
    # diagnosed fault explains the gap with confirming evidence (a probe step of the gap's
    # sign and size that the feeders did not make; a load-cell drift seen in the feed factor,
    # of the gap's sign and size), the controller cannot know which: it judges the blend by the
    # estimate further from target, widens the guard band by half the disagreement, and raises
    # `estimates_disagree`. Combined uncertainty = sqrt(nir^2 + feeders^2):
    nir_uncertainty_pct: float = 0.1  # % w/w: probe SD 0.05 (Colon 2014) and model error, x2
    feeder_uncertainty_pct: float = 0.25  # % w/w: API flow reading +-2.5 % of a 10 % w/w share
    # (load-cell accuracy, the RTD model's error through a transient)
    failsafe_confirm_s: float = 20.0  # s the disagreement must last: a third of the RTD mean,
    # so a refill's short volumetric blip does not trip it, while 20 s of suspect material
    # is still inside the feed frame (30-60 s) when the gate is told
    failsafe_guard_pct: float = 1.0  # % LC added to the guard band while it holds
    failsafe_lookback_s: float = 120.0  # s of blend judged before it is raised that is judged
    # again by its rule when it is: the gap's 60-s average crosses the limit 60 ln(g/(g - L))
    # s after a gap g opens, 97 s for a gap a quarter over it, then confirms for 20 s
    diagnosis_share: float = 0.05  # a diagnosis explains the gap now when the two differ by
    # no more than the combined uncertainty and 5 % of the diagnosed offset (its own error:
    # a step judged from four spectra, a load cell from a 2-min feed-factor average)
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
    # The feed frame is plug flow: blend reaches the dies once the press has drawn what lies
    # ahead of it, so an arrival worked out at one press rate comes later at a lower one. A
    # rate this much off the one the arrivals were timed at moves them (fraction; the rate
    # follows the turret's speed, steady to well under this between its changes).
    retime_rate_change: float = 0.02
    # Start-up material is diverted by the line itself, but the feed frame's content when
    # production begins was blended in start-up's last minute: blend judged out of spec that
    # recently (plus the feed frame's plug-flow delay) is diverted when production begins.
    startup_judge_s: float = 60.0
