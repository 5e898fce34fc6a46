"""What the controller believes about the blend: two independent estimates and their reconciling.

The NIR (a robust median of its spectra) and the feeders (their measured API ratio through the
blender's RTD) each estimate the concentration leaving the blender. A step in the NIR that the
feeders did not make is a probe fault; a lasting gap between the two that no diagnosis explains
is the fail-safe's business (`ControllerConfig`, fail-safe rules).
"""

from __future__ import annotations

import math
from collections import deque

from controller.conditions import Conditions
from controller.config import ControllerConfig
from controller.estimators import Ewma, RobustNir, RobustSpread, RtdPredictor, SlidingRange
from controller.telemetry import Shared, Telemetry


def explains(offset: float | None, gap: float, limit: float, share: float) -> bool:
    """A diagnosed offset explains the gap between the two estimates now when the two are of
    one sign and size: within the combined uncertainty and `share` of the offset itself."""
    if offset is None or offset * gap < 0:
        return False
    return abs(gap - offset) <= limit + share * abs(offset)


def undoes(step: float, offset: float, share: float) -> bool:
    """A probe's step (% w/w) undoes an offset it was believed off by: of the other sign, and
    of its size to within `share` of it."""
    return step * offset < 0 and abs(step + offset) <= share * abs(offset)


class Blend:
    """The two estimates of the blend, the feeders' refills and flow statistics, and the
    probe's standing (`nir_suspect`)."""

    def __init__(
        self, cfg: ControllerConfig, telemetry: Telemetry, conditions: Conditions, shared: Shared
    ) -> None:
        self.cfg, self.tel, self.conds = cfg, telemetry, conditions
        self.shared = shared  # the API feeder's feed factor and mode, read by `Supervisor.step`
        self.nir = RobustNir(
            window=cfg.nir_median_of,
            spike_pct=cfg.nir_spike_pct,
            stale_s=cfg.nir_stale_s,
            step_count=cfg.nir_step_count,
            restart_s=cfg.nir_restart_s,
            gap_spectra=cfg.nir_gap_spectra,
        )
        self.rtd = RtdPredictor(cfg.blender_tanks)
        self.disagreement = Ewma(cfg.reconcile_window_s)  # NIR - feeders, % w/w
        # NIR - feeders, % w/w, as the reconciliation averaged it when the open refill window
        # began, if it can only be a calibration then (`_refill_begins`, `trusted`)
        self.gap_before_refill: float | None = None
        self.nir_slow = Ewma(cfg.nir_slow_s)
        self.feeder_rate = 0.0  # % w/w per s the feeders' prediction moves
        self.feeder_history: deque[tuple[float, float]] = deque(maxlen=cfg.feeder_history)
        self.judged_step: tuple[float, float] | None = None  # the NIR step last judged
        self.pending_step: tuple[float, float] | None = None  # one seen in a refill's window
        self.retared_at = -math.inf  # the API load cell last re-tared (Reconciliation)
        self.started_at = -math.inf  # the line last seen starting up (Supervisor)
        self.starting = False  # the line is starting up now (Supervisor)
        self._gap_history: deque[tuple[float, float]] = deque()  # (time, NIR - feeders)
        self._small_step_since: float | None = None
        self.small_step_at = -math.inf  # the last small probe step diagnosed
        self._small_step_first = 0.0  # its size when first seen
        self._agree_since: float | None = None  # a suspect probe agreeing with the feeders
        # Telemetry comes often enough to show every spectrum, so a gap in their source times
        # is spectra lost (Supervisor: decisions well inside the probe's period)
        self.every_spectrum = False
        self.nir_suspect = False
        self._disagree = conditions.watch("estimates_disagree")  # (the fail-safe's)
        self.probe_offset: float | None = None  # % w/w the probe is believed off, if suspect
        # (offset % w/w, plant time) of the last suspicion cleared on agreement alone: a step
        # back by it, with the feeders in doubt, is that bias's end (`ends_bias_believed_over`)
        self.believed_over: tuple[float, float] | None = None
        self.blamed_by_elimination = False  # the probe is suspect with no evidence of its own
        self.load_cell_gap: float | None = None  # NIR - feeders a drifting load cell explains
        # % w/w the feeders' estimate would be off if the API feeder's feed factor, off its
        # usual and not diagnosed as a load cell, were one (`Reconciliation`): what judging
        # the blend by the feeders alone cannot rule out while the probe gives no estimate
        self.feeders_doubt = 0.0
        self.nir_value: float | None = None
        self.last_nir_value: float | None = None  # the last estimate the probe gave
        self.feeders_value: float | None = None
        self.refill_lots: dict[str, float] = {}  # feeder -> lot number of its last refill
        self.refilled_at: dict[str, float] = {}  # feeder -> plant time of its last refill
        # feeder -> good flow readings seen, up to `flow_window` (its noise statistic's span)
        self.flow_count: dict[str, int] = {}
        # feeder -> flow / setpoint - 1 less its own short average: its noise, blind to slow
        # excursions, and by its median to a step's transient (RobustSpread)
        self.flow_noise: dict[str, RobustSpread] = {}
        self._flow_mean: dict[str, Ewma] = {}
        self.refill_peak: dict[str, float] = {}  # feeder -> largest flow error since its refill
        # The API feeder's learnt feed factor over the last 60 decisions (a minute at one a
        # second), and when it last moved faster than any drift does (by `bridging_fall`: a
        # bridge forming or clearing, a drift's end): a step's transient follows
        self._api_feed_factor = SlidingRange(max(int(cfg.bridging_fall_window_s), 2))
        self.api_stepped_at = -math.inf
        self.noise_ratio = 1.0  # the noisiest feeder's noise over its usual (FeederNoise)
        self.last_refill = -math.inf  # plant time of the last refill of any feeder
        self.failsafe_limit = math.hypot(cfg.nir_uncertainty_pct, cfg.feeder_uncertainty_pct)
        self.target_pct = 100.0 * cfg.label_claim_mg / cfg.target_weight_mg
        feeders = (cfg.api_feeder, *cfg.other_feeders)
        self._feeder_tags = [
            (f, f"{f}.mass_flow_pv", f"{f}.mass_flow_sp", f"{f}.refill_lot", f"{f}.refilling")
            for f in feeders
        ]
        self._residence_tag = f"{cfg.blender}.residence_time"

    @property
    def estimate(self) -> dict[str, float | None]:
        return {"nir": self.nir_value, "feeders": self.feeders_value}

    def observe_nir(self, value: float, good: bool, source_time: float) -> None:
        # Between two spectra the blend can move by what the feeders' RTD prediction moves,
        # and a little more: the spike test allows a few times that.
        move = self.cfg.nir_spike_allowance * self.feeder_rate * self.cfg.nir_period_s
        cfg = self.cfg
        if self.starting and good and source_time - self.nir.last_good > cfg.nir_stale_s:
            # Starting up, a probe that saw no powder for a while sees a blend that is no step
            # from the last it saw: the blender's content is changing as it fills (random
            # campaign 9: the start-up after a bridge's stop, 26 s without a spectrum, read as
            # a +10.3 % w/w probe step, which then hid a load cell's drift).
            self.nir.restart()
        period = cfg.nir_period_s if self.every_spectrum else 0.0
        self.nir.update(value, good, source_time, move, period)

    def update(self, now: float, dt: float) -> None:
        """Both estimates at plant time `now`, `dt` after the last."""
        cfg, tel = self.cfg, self.tel
        raw = tel.raw
        refilled_at, refill_peak, counts = self.refilled_at, self.refill_peak, self.flow_count
        flows = {}
        nan = math.nan
        for feeder, pv, sp, lot_tag, refilling in self._feeder_tags:
            # (Telemetry.v and Telemetry.good, read from the raw tuples once: this is the
            # controller's busiest loop.)
            reading, shown = raw.get(pv), raw.get(sp)
            flow = nan if reading is None or reading[0] is None else float(reading[0])
            setpoint = nan if shown is None or shown[0] is None else float(shown[0])
            # While refilling, the reading is the feeder's own volumetric estimate: still the
            # best there is, as long as it is there at all.
            flows[feeder] = flow if reading is not None else setpoint
            # A short top-up can start and end between two samples of an accelerated plant;
            # the lot number it leaves behind cannot be missed.
            shown = raw.get(lot_tag)
            lot = -1.0 if shown is None or shown[0] is None else float(shown[0])
            shown = raw.get(refilling)
            busy = shown is not None and shown[0] is not None and float(shown[0])
            if busy or lot != self.refill_lots.get(feeder, lot):
                refilled_at[feeder] = now
                refill_peak[feeder] = 0.0
                last = self.last_refill  # max(last, now) by comparison: see Supervisor.step
                if now - last > cfg.refill_window_s:
                    self._refill_begins()
                self.last_refill = now if now > last else last
            self.refill_lots[feeder] = lot
            if reading is not None and reading[1] == "good":
                # Flow against its own setpoint, so the controller's trims are not noise.
                error = flow / setpoint - 1.0 if setpoint > 0 else 0.0
                count = counts.get(feeder)
                if count is None:
                    count = 0
                    self.flow_noise[feeder] = RobustSpread(cfg.flow_window)
                    self._flow_mean[feeder] = Ewma(cfg.flow_detrend_s)
                if count < cfg.flow_window:
                    counts[feeder] = count + 1
                mean = self._flow_mean[feeder]
                since_refill = now - refilled_at.get(feeder, -math.inf)
                if mean.value is not None and since_refill > cfg.refill_window_s:
                    # A refill's own transient is no noise of the feeder's (random campaign
                    # 11: a refill disturbance's tail read as a noisy API feeder). Nor would a
                    # feed factor's step be, but a noisy feeder's learnt feed factor steps.
                    self.flow_noise[feeder].append(error - mean.value, now)
                mean.update(error, dt)
                if since_refill <= cfg.refill_peak_window_s:
                    peak, size = refill_peak.get(feeder, 0.0), abs(error)
                    refill_peak[feeder] = size if size > peak else peak  # max(peak, size)

        shared, span = self.shared, self._api_feed_factor
        feed_factor = shared.feed_factor
        if math.isfinite(feed_factor) and shared.gravimetric:
            span.append(feed_factor)
            high = span.high  # (a property: read once)
            if high - span.low > cfg.bridging_fall * high:
                self.api_stepped_at = now
        else:
            span.clear()  # volumetric: the feed factor is not learnt
        total = sum(flows.values(), 0.0)
        ratio = 100.0 * flows[cfg.api_feeder] / total if total > 0 else math.nan
        residence = tel.v(self._residence_tag, cfg.residence_default_s) or cfg.residence_default_s
        before = self.rtd.value
        c_feeders = self.rtd.update(ratio, residence, dt) if math.isfinite(ratio) else None
        if c_feeders is not None and before is not None and dt > 0:
            self.feeder_rate = abs(c_feeders - before) / dt
            self.feeder_history.append((now, c_feeders))
        c_nir = self.nir.estimate(now)
        self._judge_nir_step(now, c_nir, c_feeders)
        if c_nir is not None and c_feeders is not None:
            self._judge_small_step(now, c_nir - c_feeders)
        if c_nir is not None and c_feeders is not None:
            gap = self.disagreement.update(c_nir - c_feeders, dt)
            # A probe suspected by reconciliation has no step of its own: it is believed again
            # on agreement alone (it was held suspect for good: random campaign 6 compound,
            # a +3.07 % w/w offset believed from 5,589 s on, which then explained away a load
            # cell's drift at 25,000 s: 7,302 tablets at 130 % LC).
            stepped = self.nir.last_step[0] if self.nir.last_step is not None else -math.inf
            small = self.small_step_at
            stepped = small if small > stepped else stepped  # max(...), as in Supervisor.step
            # Not in an API refill's window: the feeders read their volumetric estimate, blind
            # to the refill's real bump, and agreement then proves nothing (random campaign 16
            # compound: a -0.50 % w/w probe believed again as a refill's bump crossed its gap).
            # And agreement that lasts: the gap now and its average within half the limit for
            # a reconciliation time constant; a gap crossing zero is not agreement (random
            # campaign 48 compound: a -0.25 % w/w probe believed again as a load cell's drift
            # made the blend richer by as much, then 181 tablets released at 105 % LC).
            api_refill = self.refilled_at.get(cfg.api_feeder, -math.inf)
            half = cfg.reconcile_limit_pct / 2
            # Nor while the API feeder's feed factor is found drifting: a load cell's drift
            # is seen so when the probe is suspect, and the feeders it moves are then no
            # referee (random campaign 68 compound: a -2.6 % w/w probe believed again on
            # agreement with feeders a -33 % load cell misled, 382 tablets at 123-130 % LC
            # released).
            if not (
                self.nir_suspect
                and abs(gap) < half
                and abs(c_nir - c_feeders) < half
                and not self.conds.active("feed_factor_drift")
            ):
                self._agree_since = None
            elif self._agree_since is None:
                self._agree_since = now
            if (
                self.nir_suspect
                and self._agree_since is not None
                and now - self._agree_since >= cfg.reconcile_window_s
                and now - stepped > cfg.reconcile_window_s
                and now - api_refill > cfg.refill_window_s
            ):
                self.believe_again_on_agreement(now)
        if c_nir is not None:
            self.nir_slow.update(c_nir, dt)
        self.nir_value, self.feeders_value = c_nir, c_feeders
        if c_nir is not None:
            self.last_nir_value = c_nir

    def _refill_begins(self) -> None:
        """A refill window opens: keep the gap the reconciliation has averaged, the two
        estimates' calibration, unless it is something else: a suspect probe's offset, a
        diagnosed load cell's drift, a start-up's transient, a noisy feeder's noise (random
        campaign 16 compound: under x16 excipient noise the averaged gap was over 0.1 % w/w by
        chance, and 0.4 kg more of good tablets were diverted), or a fault the fail-safe is
        judging (random campaign 3: a 1.47 % w/w gap, kept past the fail-safe's end, made the
        blend read 8.5 % w/w and 0.8 kg of good tablets diverted)."""
        conds, gap = self.conds, self.disagreement.value
        explained = (
            gap is None
            or abs(gap) > self.failsafe_limit
            or self._disagree.active
            or self.nir_suspect
            or self.starting
            or conds.active("load_cell_drift")
            or conds.any_active("feeder_noise")
        )
        self.gap_before_refill = None if explained else gap

    def unexplained(self, gap: float) -> float:
        """What is left of a gap between the NIR and the feeders (% w/w) once a diagnosed
        probe offset is taken out of it: what a feeder's fault would have to explain (random
        campaign 20 compound: a -4.8 % w/w probe step diagnosed, then a load cell's +23 %
        drift never seen, its own -2.2 % w/w hidden in a -6.9 % w/w gap)."""
        offset = self.probe_offset
        # Only an offset that explains part of the gap: of its sign, and less than twice it
        # (random campaign 9: a start-up's real rise taken for a +10.3 % w/w probe step,
        # then a load cell's +1.3 % w/w gap read as -9).
        if (
            self.nir_suspect
            and offset is not None
            and offset * gap > 0
            and abs(offset) < 2 * abs(gap)
        ):
            return gap - offset
        return gap

    def _judge_small_step(self, now: float, gap: float) -> None:
        """A step of the NIR against the feeders too small for the spike test (under its
        0.5 % w/w): the gap's mean over the last `small_step_recent_s` against the stretch
        before, `small_step_gap_s` earlier (its mean, or its line when it ramps), and sharp:
        the gaps in between at one level or the other. The blender's RTD makes every real
        change of the blend a ramp of a minute or more, which the feeders see too; a probe
        that fouls or loses its calibration steps between two spectra (random campaign 16
        compound: a -0.48 % w/w bias, unseen for ten minutes, diverted 3.3 kg of good
        tablets read at 95.2 % LC)."""
        cfg, history = self.cfg, self._gap_history
        history.append((now, gap))
        horizon = now - cfg.small_step_recent_s - cfg.small_step_gap_s - cfg.small_step_before_s
        while history and history[0][0] < horizon:
            history.popleft()
        if (
            self._small_step_since is None
            and abs(gap - history[0][1]) < cfg.small_step_pct / 2
            and abs(gap - history[len(history) // 2][1]) < cfg.small_step_pct / 2
        ):
            # Nothing like a step since the oldest, nor since the middle (a step can bring a
            # ramp's gap back to where it was): nothing else need be worked out
            return
        refilled = max(
            self.refilled_at.get(cfg.api_feeder, -math.inf), self.retared_at, self.started_at
        )
        # A suspect probe is judged again by a small step only when it is one back by its
        # offset, sharp, with the API feeder's feed factor steadier still
        # (`step_back_feed_factor_range`): a step back is as like a drift the feeders cannot
        # see (random campaign 48 compound: a load cell's drift making the blend richer by
        # 0.28 % w/w in half a minute, taken for a -0.25 % w/w probe stepping back, 167
        # tablets at 105 % LC released), and such a drift moves the feed factor. Else it is
        # believed again on agreement that lasts (random campaign 16 compound: a -0.48 % w/w
        # bias's end, believed only when the averaged gap had come back 140 s later, diverted
        # 0.8 kg of good tablets judged at 105 % LC).
        if now - refilled < cfg.refill_window_s + cfg.small_step_before_s:
            self._small_step_since = None
            return
        big = self.nir.last_step
        if big is not None and now - big[0] < now - horizon:
            # A step the spike test has judged already (the gap shows it too, its stepping back
            # included: random campaign 21, a probe believed again taken for a new step).
            self._small_step_since = None
            return
        recent_from = now - cfg.small_step_recent_s
        before_to = recent_from - cfg.small_step_gap_s
        middle = before_to - cfg.small_step_before_s / 2
        recent = [g for t, g in history if t >= recent_from]
        early = [g for t, g in history if t < middle]
        late = [g for t, g in history if middle <= t < before_to]
        step = 0.0
        least = cfg.small_step_min_readings
        if len(recent) >= least and len(early) >= least and len(late) >= least:
            before = (sum(early, 0.0) + sum(late, 0.0)) / (len(early) + len(late))
            recent_mean = sum(recent, 0.0) / len(recent)
            step = recent_mean - before
            # Flat before it, the step is measured against its mean; on a ramp, against its
            # line (below). Not explained by the feeders either (further down).
            rise = sum(late, 0.0) / len(late) - sum(early, 0.0) / len(early)
            flat = abs(rise) < abs(step) / 4
            slope = 0.0  # of the line the gap followed before (flat: its mean)
            if not flat:
                # A probe can step while the blend ramps (random campaign 146 compound, outside
                # the tuning seeds: +0.39 % w/w as a load cell's drift made the blend leaner;
                # against the mean before, no step, and 555 tablets at 94.8-95.0 % LC were
                # released): measured against the ramp's line carried on, and sharp against it
                # too (below). A ramp that bends or eases is no step: against its line the
                # gap moves away gradually, and fails the sharpness.
                slope = rise / (cfg.small_step_before_s / 2)
                step = recent_mean - (before + slope * (now - cfg.small_step_recent_s / 2 - middle))
            # Nor while the API feeder's learnt feed factor moves: a load cell drifting moves
            # it with the blend, a ramp the RTD curves into a step (random campaign 1: a +34 %
            # drift's lean blend taken for a -0.35 % w/w probe step, 82 tablets released).
            span = self._api_feed_factor
            # (A step back by a suspect probe's offset is held to a steadier feed factor: a
            # load cell's drift making the blend richer by the offset moved it 3 % in the
            # minute before, random campaign 48 compound; 12 tablets at 105 % LC released.)
            most = (
                cfg.step_back_feed_factor_range
                if self.nir_suspect
                else cfg.small_step_feed_factor_range
            )
            moving = span.high - span.low > most * span.high
            # And sharp: a probe steps between two spectra, so the median of three jumps from
            # one level to the other at once, and the gaps left out in between lie at either
            # level. A blend the RTD moves ramps through them (random campaigns 109 and 118
            # compound, outside the seeds the rules were worked out on: load cells drifting -28
            # and -22 % made the blend richer by 0.3 % w/w within a minute, taken for a probe's
            # step: 28 and 126 tablets at 105-106 % LC released).
            ramped = False
            if not moving and abs(step) >= cfg.small_step_pct:
                near, far = before + step / 4, before + 3 * step / 4
                low, high = (near, far) if step > 0 else (far, near)
                middle_gaps = [
                    g - slope * (t - middle) for t, g in history if before_to <= t < recent_from
                ]
                between = sum(1 for g in middle_gaps if low < g < high)
                ramped = between > cfg.small_step_between_share * len(middle_gaps)
            if moving or ramped or abs(step) < cfg.small_step_pct:
                step = 0.0
            else:
                around = [c for t, c in self.feeder_history if t >= horizon]
                moved = max(around) - min(around) if around else 0.0
                # (The gap nets the feeders' movement out already; what is left to rule out is
                # their own estimate stepping, which moves them by most of the step.)
                if moved >= cfg.explained_share * abs(step):
                    step = 0.0
        if abs(step) < cfg.small_step_pct:
            self._small_step_since = None
            return
        if self._small_step_since is None:
            self._small_step_since, self._small_step_first = now, step
        elif abs(step - self._small_step_first) > abs(self._small_step_first) / 4:
            # A step holds its size as the window slides; a ramp's grows.
            self._small_step_since = None
            return
        if now - self._small_step_since >= cfg.small_step_confirm_s:
            self._small_step_since = None
            if self.nir_suspect:
                if self.steps_back(step):
                    self.probe_stepped_back()
                    self.conds.alarm(
                        now,
                        "nir_bias",
                        False,
                        f"NIR stepped back by {step:+.2f} % w/w against the feeders: reads "
                        "true again",
                    )
                return
            self.small_step_at = now
            if self.ends_bias_believed_over(now, step):
                return
            self.suspect_probe(step)
            self.conds.alarm(
                now,
                "nir_bias",
                True,
                f"NIR stepped by {step:+.2f} % w/w against the feeders, which did not move: "
                "probe fault, not trimming feeders on it",
            )

    def suspect_probe(self, offset: float | None, *, by_elimination: bool = False) -> None:
        """The probe is believed off by `offset` % w/w; None: it is believed again.
        `by_elimination`: blamed only because no feeder signal explains the gap, with no step
        of the probe's own to confirm it (`check_agreement`)."""
        self.nir_suspect = offset is not None
        self.probe_offset = offset
        self.blamed_by_elimination = by_elimination and offset is not None
        self.believed_over = None

    def believe_again_on_agreement(self, now: float) -> None:
        """A suspect probe has agreed with the feeders long enough: believed again, its offset
        remembered (`ends_bias_believed_over`)."""
        self._agree_since = None
        offset = self.probe_offset
        self.suspect_probe(None)
        if offset is not None:
            self.believed_over = (offset, now)
        self.conds.alarm(now, "nir_bias", False, "NIR agrees with the feeders again")

    def ends_bias_believed_over(self, now: float, step: float) -> bool:
        """A step (% w/w) of a probe not suspect undoes the offset it was believed over on
        agreement alone, lately (`believed_over_memory_s`), and the API feeder's feed factor,
        off its usual, says the feeders may be off by as much (`feeders_doubt`): that bias's
        end, the probe reads true, and what agreed with it was a fault of the feeders'. Said
        so once; the reconciliation then compares the two afresh (random campaign 618
        compound, outside the seeds the rules were worked out on: a +0.35 % w/w bias believed
        over as a load cell's +6 % drift brought the feeders to it; its end 5 s later taken
        for a new -0.39 % w/w fault, the feeders' doubt at 0.37, and the blend judged by the
        probe less it, 3.9 % LC too rich, until the load cell was diagnosed: 386 tablets at
        94.3-95.0 % LC released). Feeders with nothing to doubt agreed because the bias had
        ended unseen (under dropout): a step back by it then is a new probe fault, judged as
        any (believed the bias's end, a -0.35 % w/w bias 400 s after was left to the
        reconciliation, and the fail-safe diverted 3.6-4.0 kg where 0.7-1.3 kg did)."""
        over, cfg = self.believed_over, self.cfg
        if (
            self.nir_suspect
            or over is None
            or now - over[1] > cfg.believed_over_memory_s
            or not undoes(step, over[0], cfg.explained_share)
            or self.feeders_doubt < cfg.explained_share * abs(step)
        ):
            return False
        self.believed_over = None
        self._gap_history.clear()  # nor judged again as a new small step (`probe_stepped_back`)
        self.conds.alarm(
            now,
            "nir_bias",
            False,
            f"NIR stepped back by {step:+.2f} % w/w, the offset it was believed over on "
            "agreement: its bias has ended, it reads true, and the feeders that agreed with it "
            "are off",
        )
        return True

    def probe_stepped_back(self) -> None:
        """The probe stepped back by its offset: believed again, and the NIR and the feeders
        compared afresh; the averaged gap still holds the offset for a minute or two, which
        read as a new disagreement (random campaign 13: the bias's end taken for a -1.5 % w/w
        probe fault, 2 kg of good tablets diverted)."""
        self.suspect_probe(None)
        self.disagreement.value = None
        # Nor is the step back judged again as a new small step away from the feeders.
        self._gap_history.clear()

    def steps_back(self, step: float) -> bool:
        """A suspect probe's `step` (% w/w) undoes the offset it is believed off by."""
        offset = self.probe_offset
        return (
            self.nir_suspect
            and offset is not None
            and undoes(step, offset, self.cfg.explained_share)
        )

    def _judge_nir_step(self, now: float, c_nir: float | None, c_feeders: float | None) -> None:
        cfg = self.cfg
        # A re-tare changes the true blend as a refill does (the compensation comes off) and
        # rewrites the feeders' estimate: "no change in the feeders" means nothing in its wake
        # either (random campaign 50 compound: the blend's real fall taken for a probe step
        # under 77 % NIR dropout, 197 tablets at 90.5 % LC released).
        refilled = self.refilled_at.get(cfg.api_feeder, -math.inf)
        retared = self.retared_at
        refilled = retared if retared > refilled else refilled  # max(...): see Supervisor.step
        pending = self.pending_step
        if pending is not None and now - refilled >= cfg.refill_window_s:
            # The refill's window is over: its real bump has passed, a probe's step has not.
            # Still off the feeders by about the step: the probe.
            self.pending_step = None
            size = pending[1]
            if (
                self.steps_back(size)
                and c_nir is not None
                and c_feeders is not None
                and abs(c_nir - c_feeders) <= self.failsafe_limit
            ):
                # A step back by the offset, on the feeders still: the probe reads true again,
                # judged as a step away is, once the refill's bump has passed. Left to
                # agreement alone, the probe less its offset was judged by for a
                # reconciliation time more (random campaigns 45, 52 compound and 59: biases
                # of 0.8-1.8 % w/w ending in a refill's wake, 80-135 s more of good tablets
                # diverted, 0.5-0.8 kg each).
                self.probe_stepped_back()
                self.conds.alarm(
                    now,
                    "nir_bias",
                    False,
                    f"NIR stepped back by {size:+.2f} % w/w in a refill's wake and agrees with "
                    "the feeders: reads true again",
                )
            elif c_nir is not None and c_feeders is not None and not self.nir_suspect:
                gap = c_nir - c_feeders
                if (
                    size * gap > 0
                    and abs(gap - size) <= cfg.explained_share * abs(size)
                    and not self.ends_bias_believed_over(now, size)
                ):
                    # Off by the smaller of the two: a gap beyond the step is no probe's
                    # (random campaign 458 compound, outside the seeds the rules were worked
                    # out on: a +1.64 % w/w probe step over a load cell drifting -4.9 % since
                    # 150 s before, a gap of +2.03 taken whole for the probe's offset, which
                    # then explained the load cell's share away: 1,314 tablets released at
                    # 105.0-105.4 % LC). What is left is unexplained (`unexplained`).
                    self.suspect_probe(size if abs(size) < abs(gap) else gap)
                    self.conds.alarm(
                        now,
                        "nir_bias",
                        True,
                        f"NIR stepped by {size:+.2f} % w/w in a refill's wake and stays "
                        f"{gap:+.2f} off the feeders: probe fault, not trimming feeders on it",
                    )
        step = self.nir.last_step
        # (By value, not identity: compiled, the tuple is built afresh at each read. Two steps
        # are never equal: each has its own source time.)
        if step is None or step == self.judged_step:
            return
        # Each step is judged once, however far apart the decisions are: telemetry of an
        # accelerated plant comes every few plant seconds, not every second.
        self.judged_step = step
        step_time, size = step
        # A real change of the blend shows in the feeders' prediction around the same time; a
        # probe fault does not. Only that span counts, in plant time: a feeder transient a
        # minute earlier says nothing about this step.
        if step_time - refilled < cfg.refill_window_s:
            # Refilling, the API feeder reads its own volumetric estimate: blind to densified
            # powder, its "no change" is no evidence against the blend (random campaign 6
            # compound: a refill disturbance's real step taken for a +3.07 % w/w probe bias,
            # which then explained away a load cell's drift: 8,214 tablets at 130 % LC). It
            # is judged when the refill's window is over (random campaign 24 compound: a
            # probe's +1.48 % w/w step, left undiagnosed, diverted 6 kg of good product).
            self.pending_step = step
            return
        if self.steps_back(size):
            # Stepped back by the offset it was believed off by: the probe reads true again.
            self.probe_stepped_back()
            self.conds.alarm(
                now, "nir_bias", False, f"NIR stepped back by {size:+.2f} % w/w: reads true again"
            )
            return
        since = step_time - cfg.nir_step_window_s
        around = [c for t, c in self.feeder_history if t >= since]
        moved = max(around) - min(around) if around else 0.0
        if (
            not self.nir_suspect
            and moved < cfg.nir_step_explained * abs(size)
            and not self.ends_bias_believed_over(now, size)
        ):
            self.suspect_probe(size)
            self.conds.alarm(
                now,
                "nir_bias",
                True,
                f"NIR reading stepped by {size:+.2f} % w/w with "
                "no change in the feeders: probe fault, not trimming feeders on it",
            )

    def trusted(self) -> tuple[float | None, float]:
        """The concentration to judge the blend by now (% w/w) and the extra guard band (% LC)
        its source needs."""
        cfg, conds = self.cfg, self.conds
        c_nir, c_feeders = self.nir_value, self.feeders_value
        extra = 0.0
        # More guard band by the feeders than by the probe under a noisy feeder (% LC, 0 when
        # none is noisy): added where they judge the blend while the probe gives no estimate.
        # A probe that reads sees the swings (its spread, below) and, the two apart, the
        # fail-safe's band holds half their gap: measured, adding it then too diverted 1.4 kg
        # of good tablets more in random campaign 54 compound, x7 noise, every spectrum read.
        feeders_noise = 0.0
        if conds.any_active("feeder_noise"):
            # The blend varies faster than the NIR's median can follow, the more so the noisier
            # the feeder: the guard band grows with the noise over its usual, up to a cap the
            # probe's judgement needs and a higher one the feeders' alone does.
            units = max(self.noise_ratio - 1.0, 1.0)
            extra = cfg.noise_guard_pct * min(units, cfg.noise_guard_max)
            feeders_noise = cfg.noise_guard_pct * min(units, cfg.noise_guard_feeders_max) - extra
        if conds.active("nir_dropout"):
            # Fewer good spectra: the median is older and rests on fewer readings.
            extra += cfg.dropout_guard_pct
        # The blend's own variation, as the NIR sees it beyond the probe's noise, between two
        # spectra the gate does not see: a very noisy feeder moves the blend by percent in
        # seconds, which no median follows.
        spread = self.nir.spread_over(cfg.nir_uncertainty_pct)
        if spread > cfg.nir_uncertainty_pct:
            blend_sd = math.sqrt(spread * spread - cfg.nir_uncertainty_pct**2)
            lc = cfg.target_weight_mg / cfg.label_claim_mg
            extra = max(extra, cfg.blend_spread_guard * blend_sd * lc)
        probe = c_nir if c_nir is not None else self.last_nir_value
        if self._disagree.active and probe is not None and c_feeders is not None:
            # Fail-safe: one of the two is wrong and nothing says which. Judge the blend by the
            # one further from target, with the guard band widened by half the disagreement.
            # The probe less a diagnosed offset is one more opinion (random campaign 30
            # compound, as below). A probe that drops out meanwhile leaves its last estimate
            # as its opinion, however old: nothing since has settled which of the two is
            # wrong (`check_agreement`).
            target = self.target_pct
            opinions = [self._leading(probe) if c_nir is not None else probe, c_feeders]
            if self.nir_suspect and self.probe_offset is not None:
                opinions.append(probe - self.probe_offset)
            worst = max(opinions, key=lambda c: abs(c - target))
            if worst == c_feeders and c_nir is None:
                extra += feeders_noise
            return worst, self.failsafe_band(extra, abs(probe - c_feeders))
        if c_nir is not None and not self.nir_suspect:
            leading = self._leading(c_nir)
            calibration = self.gap_before_refill
            if (
                calibration is not None
                and abs(calibration) > cfg.calibration_gap_min_pct
                and self.tel.newest - self.last_refill <= cfg.refill_window_s
            ):
                # In a refill's window, the probe read on the feeders' calibration as well,
                # where it is the worse of the two (`ControllerConfig.calibration_gap_min_pct`).
                target = self.target_pct
                recalibrated = c_nir - calibration
                if abs(recalibrated - target) > abs(leading - target):
                    return recalibrated, extra
            return leading, extra
        if (
            c_nir is not None
            and c_feeders is not None
            and abs(c_nir - c_feeders) <= (self.failsafe_limit)
        ):
            # A suspect probe that agrees with the feeders again (before the suspicion is
            # cleared) may be the right one: the worst of the two, and of the probe less its
            # diagnosed offset (random campaign 30 compound: a probe biased +0.97 % w/w met a
            # load cell's drift the other way; believed, 578 tablets at 91-93 % LC released).
            target = self.target_pct
            opinions = [c_nir, c_feeders]
            if self.probe_offset is not None:
                opinions.append(c_nir - self.probe_offset)
            worst = max(opinions, key=lambda c: abs(c - target))
            return worst, extra + cfg.feeder_guard_pct
        if c_feeders is not None:
            # Without a trusted probe, the feeders' ratio carries the known reconciliation offset
            # only when the probe is sound and a feeder is the one at fault.
            offset = self.unexplained(self.disagreement.value or 0.0)
            load_cell = conds.active("load_cell_drift")
            estimate = c_feeders + (offset if load_cell else 0.0)
            held = self.last_nir_value
            if (
                c_nir is None
                and held is not None
                and abs(held - c_feeders) > self.failsafe_limit
                and self.tel.newest - self.nir.last_good <= cfg.nir_hold_s
            ):
                # A probe gone quiet for a few spectra, its last estimate off the feeders'
                # beyond their combined uncertainty, leaves that estimate as a second opinion
                # for about a residence time, which is as fast as the blend can change: not the
                # feeders alone (random campaign 50 compound: under 77 % dropout, 9 s without
                # an estimate judged by the feeders while a load cell drifted, and a tablet at
                # 108 % LC released).
                c_nir = held
            if c_nir is not None and self.nir_suspect and self.probe_offset is not None:
                # The probe less its diagnosed offset is a second opinion: through a transient
                # the feeders' RTD prediction follows the blend only in part (random campaign
                # 14 compound: 0.24 % w/w above the blend, 140 tablets released).
                corrected = c_nir - self.probe_offset
                target = self.target_pct
                if abs(corrected - target) > abs(estimate - target):
                    estimate = corrected
                # Two sensor faults at once: the probe's offset was measured while the blend
                # moved, the load cell's gap is worked out from the drift the feeder shows. The
                # feeders put right by that gap are a third opinion (random campaign 202
                # compound, outside the seeds the rules were worked out on: a -0.55 % w/w
                # probe step measured at -0.81 with a +21 % load cell's lean ramp in it; judged
                # by the probe less that offset, 2.6 % LC too rich, 123 tablets at 94.4-95.0 %
                # LC released).
                if load_cell and self.load_cell_gap is not None:
                    modelled = c_feeders + self.load_cell_gap
                    if abs(modelled - target) > abs(estimate - target):
                        estimate = modelled
            elif c_nir is not None and self.nir_value is None:  # the probe's last, held above
                target = self.target_pct
                if abs(c_nir - target) > abs(estimate - target):
                    estimate = c_nir
            if self.nir_value is None:
                # A feed factor that moved reads as a drift the feeder compensates, or as a load
                # cell drifting, whose blend is off by as much: only the probe tells them apart
                # (random campaigns 392 and 432 compound, outside the seeds the rules were
                # worked out on: load cells drifting +10 % and -45 % under 92 % dropout, taken
                # for feed factor drifts, 83 and 293 tablets released at 94 and 105-107 % LC).
                extra += self.feeders_doubt * cfg.target_weight_mg / cfg.label_claim_mg
                # And a refill's bump, which the refilling feeder reads only in part. (A
                # suspect probe less its offset sees the bump: not needed then.)
                refilled = self.refilled_at.get(cfg.api_feeder, -math.inf)
                if self.tel.newest - refilled <= cfg.refill_window_s:
                    extra += cfg.refill_feeder_guard_pct
                # And a noisy feeder's swings, which the flows they report do not show.
                extra += feeders_noise
            return estimate, extra + cfg.feeder_guard_pct
        return None, extra + cfg.feeder_guard_pct

    def unconfirmed(self, concentration: float, extra: float) -> tuple[float, float] | None:
        """How the fail-safe would judge blend judged now at `concentration` (% w/w, guard band
        `extra` % LC) when the NIR and the feeders disagree now by more than their combined
        uncertainty while the fail-safe does not hold yet: (the estimate furthest from target,
        the band `trusted` would give it); None when they agree, or it already holds. The
        fail-safe confirms on the gap's `reconcile_window_s` average, which lags the gap: what
        was judged meanwhile is judged again when it is raised (`Gate._judge_doubted`)."""
        c_nir, c_feeders = self.nir_value, self.feeders_value
        if c_nir is None or c_feeders is None or self._disagree.active:
            return None
        gap = c_nir - c_feeders
        size = -gap if gap < 0.0 else gap  # abs, as in `Supervisor.step`: every decision
        if size <= self.failsafe_limit or self.diagnosed(gap):
            return None
        target = self.target_pct
        worst = max((concentration, c_nir, c_feeders), key=lambda c: abs(c - target))
        return worst, self.failsafe_band(extra, size)

    def failsafe_band(self, extra: float, gap: float) -> float:
        """The guard band (% LC) the fail-safe judges by: `extra` widened by its own guard and
        half the two estimates' gap (% w/w, its size)."""
        cfg = self.cfg
        return extra + cfg.failsafe_guard_pct + gap * cfg.target_weight_mg / cfg.label_claim_mg / 2

    def _leading(self, c_nir: float) -> float:
        """The NIR's median or its newest accepted spectrum, whichever is further from target.
        On a fast ramp (a refill's, 0.3 % LC a plant second) the median of three lags its
        newest spectrum by a spectrum or two, more when an accelerated plant's telemetry shows
        only some of them. A newest spectrum within the probe's noise of the median says
        nothing the median does not (and judged by, it diverted 0.1x the true OOS more)."""
        latest = self.nir.latest
        lead = abs(latest - c_nir) if latest is not None else 0.0
        if latest is None or not self.cfg.nir_lead_min_pct <= lead <= self.cfg.nir_lead_max_pct:
            return c_nir
        target = self.target_pct
        return latest if abs(latest - target) > abs(c_nir - target) else c_nir

    def diagnosed(self, gap: float) -> bool:
        """Whether a diagnosed fault explains the gap between the NIR and the feeders now
        (% w/w) with confirming evidence: a probe's offset, a load cell's drift, or both."""
        limit, share = self.failsafe_limit, self.cfg.diagnosis_share
        # A probe blamed by elimination explains nothing: its offset is the gap itself, so
        # it would always "explain" it (random campaign 454 compound, outside the seeds the
        # rules were worked out on: a +51 % feed factor drift and a -12.7 % load cell drift
        # cancelled in the feed factor; the sound probe, 1.08 % w/w above the feeders, was
        # blamed, the fail-safe cleared, and 2,591 tablets at 108-112 % LC were released
        # on the feeders' word).
        confirmed = self.nir_suspect and not self.blamed_by_elimination
        probe = self.probe_offset if confirmed else None
        load_cell = self.load_cell_gap
        # Both at once (two sensor faults): the probe's offset and the load cell's gap add.
        both = probe + load_cell if probe is not None and load_cell is not None else None
        return (
            explains(probe, gap, limit, share)
            or explains(load_cell, gap, limit, share)
            or explains(both, gap, limit, share)
        )

    def check_agreement(self, now: float, dt: float) -> None:
        """Fail-safe: the NIR and the feeders disagree beyond their combined uncertainty and no
        single diagnosed fault explains the gap with confirming evidence (ControllerConfig).

        Judged only while both estimates exist: a probe that drops out says neither that they
        agree nor that they still disagree, so the verdict stands and a pending one waits
        (`Conditions.hold`). Judged as agreement, every spectrum lost cleared the fail-safe
        or started its confirmation again: under 92 % dropout a probe reading 3.7 % w/w above
        feeders misled by a -45 % load cell never confirmed it (random campaign 432
        compound, outside the seeds the rules were worked out on: 897 tablets at 105-135 %
        LC released)."""
        limit = self.failsafe_limit
        gap = self.disagreement.value
        present = False
        c_nir, c_feeders = self.nir_value, self.feeders_value
        if c_nir is None or c_feeders is None:
            self.conds.hold("estimates_disagree", dt)
            return
        if gap is not None and abs(gap) > limit:
            # The averaged gap says there is a disagreement; whether a diagnosis explains it is
            # judged on the gap now, which does not lag the fault's onset or end.
            present = not self.diagnosed(c_nir - c_feeders)
        if (
            not present
            and self._disagree.active
            and now - self.refilled_at.get(self.cfg.api_feeder, -math.inf)
            < self.cfg.refill_peak_window_s
        ):
            # The API feeder refilling runs volumetrically and reads its own estimate:
            # agreement with it then proves nothing (a refill's real spike can meet a biased
            # probe's offset). The other feeders refill every few minutes and move the ratio
            # little: holding on theirs held the fail-safe, and the diversion, for good.
            present = True
        cond = self._disagree
        if cond.moved_by(present):  # (else no change: `watch`)
            self.conds.update(
                now,
                "estimates_disagree",
                present,
                self.cfg.failsafe_confirm_s,
                lambda: (
                    f"NIR and feeders disagree by {gap or 0.0:+.2f} % w/w (combined uncertainty "
                    f"{limit:.2f}) and no diagnosed fault explains it: judging the blend by the "
                    "worse of the two, guard band widened"
                ),
                "NIR and feeders agree again, or a diagnosis explains their gap",
            )
