"""Fault detectors: each fault of the catalogue (shared/domain.md) from its signature.

Each detector is a small unit that reads telemetry and the blend's estimates, updates its
debounced condition (`Conditions`, which raises and clears the alarm named after the fault
kind) and, where the fault calls for it, acts. `Detectors.run` calls them in a fixed order
once a decision; some read what an earlier one found (`Context`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from controller.actions import Action
from controller.estimators import Ewma, FeedFactorCurve

if TYPE_CHECKING:
    from controller.supervisor import Supervisor


@dataclass(slots=True)
class Context:
    """What every detector may use, worked out once a decision."""

    now: float
    dt: float
    settled: bool  # producing long enough for learnt baselines to mean something
    steady: bool  # no bridge now or lately, the API drive not saturated
    quiet: bool  # steady, and no feeder refilled lately
    # The API feeder's readings only detectors use, each read once a run (`Telemetry.v`
    # costs a call; measured with the rest of `Detectors.run`'s: see there). Its feed factor
    # and mode, which the blend uses too, are the supervisor's `Shared`.
    hopper: float = math.nan
    drive: float = math.nan


class Bridging:
    """Fault 3: the API feeder's output collapses. Either its learnt feed factor falls fast, far
    faster than bulk density drifts (the feeder then drives harder and may cope), or it is at
    full drive and still short of its setpoint; in that case the line is stopped if it has not
    recovered in `bridging_stop_s`."""

    def __init__(self, sv: Supervisor) -> None:
        self.sv, cfg = sv, sv.cfg
        api = cfg.api_feeder
        # (Its feed factor, mode and drive come in the `Context`.)
        self.tags = (f"{api}.mass_flow_sp", f"{api}.mass_flow_pv")
        self.cond = sv.conds.watch("bridging")
        self.history: deque[tuple[float, float]] = deque()  # (time, learnt feed factor)
        self.before: float | None = None  # the feed factor before a fast fall, while it lasts
        self.fell_at = -math.inf
        # When the API feeder's drive was last saturated (`drive_saturated_pct`): it could
        # then fall short of its setpoint and the blend turn lean, as it does not under a
        # bridge the drive copes with
        self.starved_at = -math.inf

    def _rich(self) -> bool:
        """A bridge starves the feeder: a blend the NIR reads richer than the feeders say is
        the opposite, a load cell reading low (random campaign 6 compound: its drift taken for
        a bridge, and the feed factor it moved not learnt while "bridged"). The gap now as well
        as its average: the average lags a fast drift by its minute (random campaign 25: a
        -42 % load cell taken for a bridge, never diagnosed)."""
        blend = self.sv.blend
        c_nir, c_feeders = blend.nir_value, blend.feeders_value
        gap_now = c_nir - c_feeders if c_nir is not None and c_feeders is not None else 0.0
        gap = blend.unexplained(max(blend.disagreement.value or 0.0, gap_now))
        return gap > self.sv.cfg.reconcile_limit_pct

    def _fell(self, ctx: Context) -> bool:
        """Whether the learnt feed factor fell fast and has not come back."""
        sv, cfg, now = self.sv, self.sv.cfg, ctx.now
        ff = sv.shared.feed_factor
        history = self.history
        if not (math.isfinite(ff) and sv.shared.gravimetric):
            history.clear()  # volumetric: the feed factor is not learnt, nothing to compare
            return self.before is not None
        history.append((now, ff))
        oldest = now - cfg.bridging_fall_window_s
        while history and history[0][0] < oldest:
            history.popleft()
        if self.before is not None:
            recovered = ff > self.before * (1.0 - cfg.bridging_fall / 2)
            # And a "bridge" the blend then proves rich was none.
            if recovered or self._rich() or now - self.fell_at > cfg.bridging_fall_hold_s:
                self.before = None
        else:
            old = history[0][1]
            # Below its usual value too (the feed-factor curve's at this hopper mass): a feed
            # factor coming back from a drift falls fast as well, but toward its usual value,
            # not under it.
            fell = ff < old * (1.0 - cfg.bridging_fall) and ff < (
                sv.detectors.reconciliation.usual(ctx.hopper) or old
            ) * (1.0 - cfg.bridging_fall)
            # (Rarely: the quiet test's look-ups only then. Measured, with the changes to
            # `FeederNoise`: the closed loop's instructions a plant second 676,900 -> 673,700)
            if fell and old > 0:
                refill = sv.blend.refilled_at.get(cfg.api_feeder, -math.inf)
                load_cell = sv.conds.get("load_cell_drift")
                # A load cell drifting, or read true again, moves the feed factor the feeder
                # seems to have. Densified powder after a refill falls back too, but toward its
                # usual feed factor, not under it (the test above): a refill's wake is only the
                # window that still holds its volumetric stretch (random campaign 79: a 14 %
                # bridge 92 s after a refill, unseen in the refill's 300-s quiet time, was
                # learnt as a drift).
                quiet = (
                    now - refill > cfg.bridging_fall_window_s
                    and not load_cell.active
                    and now - load_cell.cleared_at > cfg.quiet_after_refill_s
                )
                if quiet and not self._rich():
                    self.before, self.fell_at = old, now
        return self.before is not None

    def update(self, ctx: Context, actions: list[Action]) -> None:
        sv, cfg, now = self.sv, self.sv.cfg, ctx.now
        v, (sp_tag, pv_tag) = sv.tel.v, self.tags
        drive, sp, pv = ctx.drive, v(sp_tag), v(pv_tag)
        starved = drive >= cfg.bridging_drive_pct and pv < cfg.bridging_flow_share * sp
        if drive >= cfg.drive_saturated_pct:
            self.starved_at = now
        fell = self._fell(ctx)
        cond, present = self.cond, starved or fell
        # (Updated only when that could change something: `Conditions.watch`.)
        if cond.moved_by(present) and sv.conds.update(
            now,
            "bridging",
            present,
            cfg.bridging_confirm_s,
            lambda: (
                f"API feeder at full drive delivers {pv:.2f} of {sp:.2f} kg/h: "
                "bridging; diverting the lean blend"
                if starved
                else f"API feeder's feed factor fell by over {cfg.bridging_fall:.0%} in "
                f"{cfg.bridging_fall_window_s:.0f} s: bridging; the drive compensates"
            ),
        ):
            raised = cond.raised_at
            if starved and now - raised > cfg.bridging_stop_s and sv.enabled:
                why = f"API feeder bridged for {now - raised:.0f} s: stopping"
                actions.append(Action("line", "stop", None, why))


class Reconciliation:
    """Faults 2, 5 and 7 from one reconciliation: the NIR against the feeders' ratio, and the
    API feeder's learnt feed factor against its feed-factor curve (`FeedFactorCurve`).

    - the NIR disagrees with healthy feeders and no feeder signal explains it: the probe (7);
    - the feed factor seems to move and the NIR's gap is what that would make: a load cell (5),
      compensated on the API setpoint;
    - the feed factor moves and the NIR agrees with the feeders: a drift the feeder's own
      gravimetric control absorbs (2).
    """

    def __init__(self, sv: Supervisor) -> None:
        self.sv, cfg = sv, sv.cfg
        self.base = Ewma(cfg.feed_factor_base_s)
        self.fast = Ewma(cfg.feed_factor_fast_s)
        self.fast_hopper = Ewma(cfg.feed_factor_fast_s)  # the hopper mass, averaged alike
        self.curve = FeedFactorCurve(cfg.feed_factor_curve_s, cfg.feed_factor_curve_span_kg)
        api = cfg.api_feeder
        self.hopper_tag = f"{api}.hopper_mass"  # (and its feed factor and mode: `Context`)
        self.was_quiet = False
        self.hopper_before = math.nan  # the hopper's reading at the last decision
        # One-sided cumulative sums of the learnt feed factor's excess over the curve beyond
        # its allowance (fraction x s), upward and downward: a fast drift's evidence adds up
        # while a 120-s average still lags it (`feed_factor_cusum_*`)
        self.cusum_up = 0.0
        self.cusum_down = 0.0
        self.bridged_ref: float | None = None  # a bridge's learnt feed factor, once settled
        # A load cell was diagnosed while the probe was suspect: both faults are there (the
        # probe is not cleared by the load cell's signature: `blamed_wrongly`)
        self.both_faults = False
        # Re-tared, the load cell's compensation follows the feeder relearning its feed factor
        self.relearning = False
        self.cell_change = 0.0  # the load cell's `change_now`, as last compensated
        conds = sv.conds  # (its conditions, kept: `Conditions.watch`)
        self.load_cell, self.drift = (
            conds.watch("load_cell_drift"),
            conds.watch("feed_factor_drift"),
        )
        self.disagrees, self.bridge = conds.watch("nir_disagrees"), conds.watch("bridging")

    def usual(self, hopper: float | None = None) -> float | None:
        """The feed factor the API feeder's powder usually has at this hopper mass (by
        default the one now)."""
        if hopper is None:
            hopper = self.sv.tel.v(self.hopper_tag)
        expected = self.curve.at(hopper) if math.isfinite(hopper) else None
        return expected or self.base.value

    def change_now(self, feed_factor: float, hopper: float, change: float) -> float:
        """How much more per % drive the API feeder's learnt feed factor is now than its
        usual at this hopper mass (`change`, the recent average's, when either is unknown).

        The feeder drives at its setpoint over the feed factor it has learnt: with a load
        cell reading `b` more, it learns `1 + b` times the powder's and feeds `1 / (1 + b)` of
        its setpoint, whatever the drift's shape. The compensation that keeps the true flow is
        the learnt feed factor over the powder's now, not its 120-s average, which trails a
        ramping drift by two minutes of it (random campaigns 16 and 84 compound: the blend at
        95-96 % LC for four minutes after the diagnosis, diverted). The learnt feed factor is
        the feeder's own average already (of its filtered flow)."""
        usual = self.usual(hopper) if math.isfinite(hopper) else None
        if not (usual and math.isfinite(feed_factor) and feed_factor > 0.0):
            return change
        return feed_factor / usual - 1.0

    def _follow_relearning(
        self,
        now: float,
        feed_factor: float,
        hopper: float,
        gravimetric: bool,
        actions: list[Action],
    ) -> None:
        """After a re-tare the load cell's compensation follows the learnt feed factor back to
        the powder's, and comes off once it is within a follow step of it, or after
        `retare_relearn_s` (a refill's volumetric stretch holds it where it is; after it the
        densified powder's feed factor is followed too, a few % for a minute, where holding
        the compensation through the refill's quiet time left the blend at 116 % LC)."""
        cfg, loops = self.sv.cfg, self.sv.loops
        if now - self.sv.blend.retared_at < cfg.retare_relearn_s:
            if not gravimetric:
                return
            change = self.change_now(feed_factor, hopper, 0.0)
            if abs(change) >= cfg.load_cell_follow:
                loops.compensate_load_cell(True, True, change, actions, relearning=True)
                return
        self.end_relearning(actions)

    def end_relearning(self, actions: list[Action]) -> None:
        """Take the re-tared cell's compensation off: the feeder has relearnt, or the line
        stopped (the restart's blend is made with the recipe's setpoints: random campaign 87,
        a compensation kept through a stop made 0.6 kg of start-up blend at 86-97 % LC)."""
        self.relearning = False
        self.sv.loops.compensate_load_cell(True, False, 0.0, actions)

    def update(self, ctx: Context, actions: list[Action]) -> None:
        sv, cfg, now = self.sv, self.sv.cfg, ctx.now
        conds, blend = sv.conds, sv.blend
        feed_factor, gravimetric, hopper = sv.shared.feed_factor, sv.shared.gravimetric, ctx.hopper
        gap = blend.unexplained(blend.disagreement.value or 0.0)
        load_cell_cond, bridge = self.load_cell, self.bridge
        bridged = bridge.active
        # The API feeder's learnt feed factor is disturbed by its own refills (densified
        # powder), not by the other feeders': theirs come every few minutes and would hide a
        # drift for most of the time.
        api_refill = blend.refilled_at.get(cfg.api_feeder, -math.inf)
        # Nor by a step of the feed factor (a bridge forming or clearing, a drift's end): until
        # its transient is over, and then the recent average starts afresh.
        stepped = blend.api_stepped_at
        api_quiet = (
            ctx.steady
            and now - api_refill > cfg.quiet_after_refill_s
            and now - stepped > cfg.quiet_after_refill_s
        )
        if api_quiet and not self.was_quiet and math.isfinite(feed_factor) and gravimetric:
            # Quiet again after a refill or a bridge: the recent average starts afresh, not
            # with the densified powder's tail in it (random campaign 13: a refill
            # disturbance's, 3 % five minutes after it, read as a drift).
            self.fast.value = feed_factor
            self.fast_hopper.value = hopper if math.isfinite(hopper) else None
        self.was_quiet = api_quiet
        if math.isfinite(feed_factor) and gravimetric and not bridged:
            # A drift is the learnt feed factor moving away from its own long-run average:
            # a fast average against a slow one, so a past drift does not stick for hours.
            # Neither learns a bridge's feed factor: the powder's is the one before it and
            # after it (learnt, the recovery from a bridge read as a drift or a load cell
            # for minutes after it: random campaigns 1-30, 53 false drift alarms).
            self.fast.update(feed_factor, ctx.dt)
            if math.isfinite(hopper):
                self.fast_hopper.update(hopper, ctx.dt)
            if not (load_cell_cond.active or self.drift.active):
                # While a load cell drifts, the feed factor it seems to have is measured
                # against the one before the drift: the compensation and the fail-safe's
                # explanation of the NIR's gap both rest on it. Nor is a diagnosed drift's
                # the usual one: its end would read as a drift back, or as a bridge.
                self.base.update(feed_factor, ctx.dt)
                expected = self.curve.at(hopper) if api_quiet and math.isfinite(hopper) else None
                if (
                    api_quiet
                    and math.isfinite(hopper)
                    and (
                        expected is None
                        or abs(feed_factor / expected - 1.0) < cfg.feed_factor_drift_change
                    )
                ):
                    # Only a feed factor the curve could have given is learnt: one further
                    # off is a fault's, diagnosed or not (random campaign 8 compound: a
                    # missed load cell drift's, learnt, read as a drift for hours after).
                    self.curve.update(hopper, feed_factor, ctx.dt)
        reference: float | None = None  # the feed factor the drift is measured against
        quiet_s = cfg.feed_factor_cusum_quiet_s
        if (
            load_cell_cond.active
            or now - load_cell_cond.cleared_at < cfg.quiet_after_refill_s
            or not math.isfinite(feed_factor)
            or (not ctx.steady and not bridge.active)
        ):
            # A load cell drifting or just re-tared, a bridge just cleared, a saturated drive:
            # the feed factor is not the powder's; start afresh. (Through a refill and its
            # quiet time the sums are held: a drift goes on under it. Random campaign 9: a
            # 0.98 /h drift's sum, restarted at a refill, was not passed again before the
            # drift's end.)
            self.cusum_up = self.cusum_down = 0.0
            self.bridged_ref = None
        elif bridge.active:
            # Under a bridge the feeder's feed factor is the bridge's: a drift goes on moving
            # it, measured against the bridged feed factor once it has been learnt (random
            # campaigns 10, 36, 42 compound: drifts of 0.64-0.85 /h hidden under a bridge).
            if now - bridge.raised_at < quiet_s or not gravimetric:
                self.cusum_up = self.cusum_down = 0.0
                self.bridged_ref = None
            elif self.bridged_ref is None:
                self.bridged_ref = feed_factor
            else:
                reference = self.bridged_ref
        elif ctx.settled and gravimetric and now - api_refill > quiet_s and now - stepped > quiet_s:
            self.bridged_ref = None
            reference = self.usual(hopper)
        if reference:
            excess = feed_factor / reference - 1.0
            allowance, cap = cfg.feed_factor_cusum_allowance, 2 * cfg.feed_factor_cusum_limit
            # (Capped: a long drift's sum would otherwise outlast its end by minutes.) Min and
            # max by comparison, as in `Supervisor.step`: min(cap, max(0.0, sum)).
            up = self.cusum_up + (excess - allowance) * ctx.dt
            up = up if up > 0.0 else 0.0
            self.cusum_up = up if up < cap else cap
            down = self.cusum_down - (excess + allowance) * ctx.dt
            down = down if down > 0.0 else 0.0
            self.cusum_down = down if down < cap else cap
        up, down = self.cusum_up, self.cusum_down
        cusum = down if down > up else up  # max(up, down)
        fast = self.fast.value
        # The recent average against what the curve gives at the recent average's hopper mass
        # (its long-run average until the hopper has emptied and been refilled once): a refill
        # fills the hopper at once, the recent average follows in minutes (the standard
        # campaign: against the curve at a full hopper, a load cell's drift seemed to halve
        # after a refill, and the fail-safe diverted two minutes of good tablets).
        usual = self.usual(self.fast_hopper.value)
        change = fast / usual - 1.0 if usual and fast else 0.0
        c_feeders = blend.feeders_value or 0.0
        # A load cell that reads `change` more per % drive makes the feeder deliver 1/(1 +
        # change) of what it reports: the feeders' estimate is that much above the blend
        # (without the division the explanation grew 14 % too large for a 14 % drift, and the
        # fail-safe diverted 400 s of good tablets in random campaign 5).
        expected_gap = -c_feeders * change / (1.0 + change) if change > -1.0 else 0.0
        # What judging by the feeders alone cannot rule out (`Blend.trusted`): unless a load
        # cell is diagnosed and its gap put right.
        blend.feeders_doubt = (
            abs(expected_gap)
            if abs(change) > cfg.feed_factor_drift_change and not load_cell_cond.active
            else 0.0
        )
        limit = cfg.reconcile_limit_pct
        consistent = abs(gap) > limit and abs(gap - expected_gap) < cfg.explained_share * abs(gap)
        # A probe blamed because no feeder signal explained its gap is cleared when one comes to
        # explain the whole gap, beyond what the blame allowed (random campaign 70 compound: a
        # -4.3 % load cell drift showed -1.7 % in the feed factor when the probe was blamed, under
        # 66 % dropout, then -2.8 %: gap 0.39 % w/w, 0.28 explained, never diagnosed; 445
        # tablets at 105 % LC released while the blend was judged by the feeders).
        # Not once a load cell was diagnosed beside the suspect probe: a probe offset and a load
        # cell's drift add up, and the drift's signature outlasts its end by minutes (random
        # campaigns 26 and 28 compound: just after the re-tare, the lagging feed factor's change
        # explained half of a +2.7 and a -3.3 % w/w probe bias).
        # Nor while the API feeder's own powder moves its feed factor: a refill disturbance's
        # densified powder, as the load cell's drift would (random campaign 16 compound: +5.5 %
        # in the feed factor 330 s after a +70 % disturbance explained a -0.48 % w/w probe
        # bias; a load cell diagnosed that was not there, and compensated).
        raw_gap = blend.disagreement.value or 0.0
        self.both_faults = blend.nir_suspect and (self.both_faults or load_cell_cond.active)
        blamed_wrongly = (
            blend.nir_suspect
            and not self.both_faults
            and api_quiet
            and not conds.active("refill_disturbance")
            and abs(change) > cfg.probe_feed_factor_limit
            and abs(raw_gap) > limit
            and abs(raw_gap - expected_gap) < cfg.explained_share * abs(raw_gap)
        )
        # A probe that disagrees with healthy feeders, with no feeder signal to explain it, is
        # the probe: caught here even when its offset crept in instead of stepping.
        # Nor while a feeder is noisy: its flow readings then make a poor referee (random
        # campaign 15: a 20x noisier excipient feeder's estimate sat 0.4 % w/w above a sound
        # probe, which was blamed and the blend judged by the feeders: 347 tablets released).
        probe_suspect = (
            ctx.settled
            and ctx.quiet
            and not conds.any_active("feeder_noise")
            and abs(gap) > limit
            and not consistent
            and abs(change) < cfg.probe_feed_factor_limit
        )
        # (Each condition is updated only when that could change something: `Conditions.watch`.)
        disagrees = self.disagrees
        was_disagreeing, disagreeing = disagrees.active, False
        if disagrees.moved_by(probe_suspect):
            disagreeing = conds.update(
                now,
                "nir_disagrees",
                probe_suspect,
                cfg.nir_disagrees_confirm_s,
                lambda: (
                    f"NIR disagrees with the feeders by {gap:+.2f} % w/w and no feeder "
                    "explains it: probe fault, not trimming feeders on it"
                ),
            )
        if disagreeing and not was_disagreeing and not blend.nir_suspect:
            blend.suspect_probe(gap, by_elimination=True)
            conds.alarm(now, "nir_bias", True, "NIR reconciled against the feeders: biased")
        was_drifting = load_cell_cond.active
        # A feeding hopper's reading falls by what the feeder feeds, unless it is refilled: one
        # that jumps, up or further down, between refills is a load cell re-tared, true again
        # at once (random campaign 5: its compensation, kept until the drift test cleared,
        # set the API 34 % high and 400 s of tablets at 114 % LC were diverted).
        moved = hopper - self.hopper_before if math.isfinite(self.hopper_before) else 0.0
        self.hopper_before = hopper
        fed = sv.shared.api_sp * ctx.dt / 3600.0
        if was_drifting and api_refill < now and abs(moved + fed) > cfg.retare_jump_kg:
            conds.update(
                now, "load_cell_drift", False, 0.0, "", "API load cell re-tared: reads true"
            )
            # The compensation comes off as the feeder relearns its feed factor (below), not
            # at once: it still drives by the one it learnt from the drifting cell, and so
            # feeds short until it has relearnt (random campaign 16 compound: off at once, the
            # blend fell to 95 % LC a minute after the re-tare, diverted).
            self.relearning = True
            load_cell = False
            # The blend in the blender was fed at the rate the cell's diagnosed error gives,
            # not the one it reported: the feeders' estimate of it is put right, and the NIR
            # and the feeders compared afresh (the standard campaign: the reported rate's
            # blend, flushing through the RTD, set off the fail-safe for 90 s).
            if blend.load_cell_gap is not None:
                blend.rtd.shift(blend.load_cell_gap)
            blend.disagreement.value = None
            blend.retared_at = now
        elif now - api_refill > cfg.quiet_after_refill_s:
            drifting = (
                ctx.settled
                and (consistent or blamed_wrongly)
                and abs(change) > cfg.load_cell_change
            )
            load_cell = False
            if load_cell_cond.moved_by(drifting):
                load_cell = conds.update(
                    now,
                    "load_cell_drift",
                    drifting,
                    cfg.load_cell_confirm_s,
                    lambda: (
                        f"API feeder reads {change:+.1%} more per % drive and NIR disagrees by "
                        f"{raw_gap if blamed_wrongly else gap:+.2f} % w/w: its load cell is "
                        "drifting; trusting NIR"
                    ),
                )
            if load_cell and not was_drifting and blamed_wrongly:
                blend.suspect_probe(None)
                conds.alarm(
                    now, "nir_bias", False, "the API feeder's load cell explains the NIR's gap"
                )
            if was_drifting or load_cell:  # (else nothing to compensate: a call saved)
                self.cell_change = self.change_now(feed_factor, hopper, change)
                sv.loops.compensate_load_cell(was_drifting, load_cell, self.cell_change, actions)
        else:
            # After a refill the learnt feed factor carries the densified powder's: the
            # verdict and the compensation stand until it is over (standard campaign: a
            # refill during a load cell's drift, followed, set the API 4 % high).
            load_cell = was_drifting
        if load_cell:
            self.relearning = False
        elif self.relearning:
            self._follow_relearning(now, feed_factor, hopper, gravimetric, actions)
        if load_cell:
            # What the cell's drift makes of the feeders' estimate now, not two minutes ago
            # (`change_now`): the fail-safe's explanation of the NIR's gap. Through a refill's
            # quiet time, as the compensation, the one from before it: the learnt feed factor
            # then carries the densified powder's too (random campaign 43: +7.5 % for a 4.6 %
            # drift, the gap left unexplained and 0.9 kg of good tablets diverted).
            now_change = self.cell_change
            blend.load_cell_gap = (
                -c_feeders * now_change / (1.0 + now_change) if now_change > -1.0 else 0.0
            )
        else:
            blend.load_cell_gap = None
        # The cumulative sum is most of its own confirmation (random campaigns 13 and 27:
        # drifts of 0.75-0.84 /h over five minutes, over before the recent average had been
        # 3 % off for a minute).
        # A load cell moves the feed factor the feeder seems to have as fast or faster: the
        # NIR must agree with the feeders now too, not only on average.
        summed = cusum > cfg.feed_factor_cusum_limit
        if summed:
            nir_now, feeders_now = blend.nir_value, blend.feeders_value
            if nir_now is not None and feeders_now is not None:
                summed = abs(blend.unexplained(nir_now - feeders_now)) < limit
        # (The sums gather only in quiet times, and are held through a refill: past their
        # limit they need no more quiet; random campaign 9, a refill 20 s before a 0.98 /h
        # drift's confirmation, then 300 s of quiet, then the drift's end.)
        drift = (
            ctx.settled
            and ((api_quiet and abs(change) > cfg.feed_factor_drift_change) or summed)
            and abs(gap) < limit
        )
        if self.drift.moved_by(drift):
            conds.update(
                now,
                "feed_factor_drift",
                drift,
                cfg.feed_factor_cusum_confirm_s if summed else cfg.feed_factor_drift_confirm_s,
                lambda: (
                    f"API feeder needs {-change:+.1%} drive for its flow: feed factor "
                    "drifting (bulk density); the feeder compensates"
                    if not summed
                    else f"API feeder's feed factor "
                    f"{'above' if self.cusum_up > self.cusum_down else 'below'} its usual by "
                    f"over {cfg.feed_factor_cusum_allowance:.1%} for long (cumulative "
                    f"{cusum:.2f} s): feed factor drifting (bulk density); the feeder compensates"
                ),
            )


class NirDropout:
    """Fault 8: a share of spectra lost or spiky; the robust estimate carries on."""

    def __init__(self, sv: Supervisor) -> None:
        self.sv = sv
        self.cond = sv.conds.watch("nir_dropout")

    def update(self, ctx: Context, actions: list[Action]) -> None:
        sv, cfg, cond = self.sv, self.sv.cfg, self.cond
        bad = sv.blend.nir.bad_fraction
        active = cond.active
        dropping = bad > (cfg.dropout_clear if active else cfg.dropout_raise)
        if cond.moved_by(dropping):  # (else no change: `watch`)
            sv.conds.update(
                ctx.now,
                "nir_dropout",
                dropping,
                cfg.dropout_confirm_s,
                lambda: f"{bad:.0%} of NIR spectra lost or spiky: using the robust estimate",
            )


def _noise_message(feeder: str, rsd: float, usual: float | None) -> str:
    return (
        f"{feeder} flow noise {rsd:.1%} is {rsd / (usual or rsd):.1f}x its usual: "
        "widening the diversion guard band"
    )


class FeederNoise:
    """Fault 4: a feeder's flow noise well above its usual, between refills. The noise is
    the flow's robust spread about its own short average (`RobustSpread`): a step's transient
    (a lot of another density, a drift's end, a refill's tail) is no noise."""

    def __init__(self, sv: Supervisor) -> None:
        self.sv = sv
        cfg = sv.cfg
        self.feeders = (cfg.api_feeder, *cfg.other_feeders)
        self.names = {feeder: f"feeder_noise:{feeder}" for feeder in self.feeders}
        # feeder -> its usual noise (learnt once it has a full window of flow readings)
        self.usual = {feeder: Ewma(cfg.noise_base_s) for feeder in self.feeders}
        self.ratio: dict[str, float] = {}  # feeder -> its noise over its usual, when last judged
        # Each feeder with its condition's name and its usual, and whether it is the API
        # feeder: looked up once, not every decision (measured with the rest of `Detectors`:
        # see `Bridging._fell`)
        self._judged = tuple(
            (
                feeder,
                self.names[feeder],
                self.usual[feeder],
                feeder == cfg.api_feeder,
                sv.conds.watch(self.names[feeder]),
            )
            for feeder in self.feeders
        )

    def update(self, ctx: Context, actions: list[Action]) -> None:
        sv, cfg, now = self.sv, self.sv.cfg, ctx.now
        blend, conds = sv.blend, sv.conds
        counts, refilled_at, flow_noise = blend.flow_count, blend.refilled_at, blend.flow_noise
        for feeder, name, baseline, api, cond in self._judged:
            if counts.get(feeder, 0) < cfg.flow_window:
                continue
            # The noise counts only between the feeder's own refills: until then the verdict
            # stands (a noisy feeder stays noisy through a refill, and its guard band with
            # it). Its flow about its own setpoint is its own: another feeder's refill or
            # bridge does not make it noisy (random campaign 4 compound: an excipient feeder
            # 13.7x noisier for 19 minutes, unjudged under the API feeder's bridge).
            own_refill = refilled_at.get(feeder, -math.inf)
            if now - own_refill <= cfg.quiet_after_refill_s or (api and not ctx.steady):
                continue
            rsd = flow_noise[feeder].sd
            usual = baseline.value
            noisy = usual is not None and ctx.settled and rsd > cfg.noise_ratio * usual
            self.ratio[feeder] = rsd / usual if usual else 1.0
            # (The message is worded only for a raise, and only a noisy feeder is raised; the
            # condition is updated only when that could change something: `Conditions.watch`.)
            active = False
            if cond.moved_by(noisy):
                message = partial(_noise_message, feeder, rsd, usual) if noisy else ""
                active = conds.update(now, name, noisy, cfg.noise_confirm_s, message)
            if not active:
                baseline.update(rsd, ctx.dt)
        # The noisiest of the noisy feeders' ratios, 1.0 when none is (`max(ratios,
        # default=1.0)`, by comparison as in `Supervisor.step`).
        # (A feeder's condition is there from the start: `Conditions.watch`.)
        conditions, names, worst = conds.items, self.names, None
        for feeder, ratio in self.ratio.items():
            if conditions[names[feeder]].active and (worst is None or ratio > worst):
                worst = ratio
        blend.noise_ratio = 1.0 if worst is None else worst


class Mismatch:
    """Faults 6, 11 and 12: a drive that does not do what it is set to (impeller speed, fill
    depth, turret speed), its measured value against its setpoint."""

    def __init__(
        self,
        sv: Supervisor,
        name: str,
        sp_tag: str,
        pv_tag: str,
        off: str,
        delay_s: float,
        message: str,
    ) -> None:
        self.sv, self.name, self.sp_tag, self.pv_tag = sv, name, sp_tag, pv_tag
        self.off, self.delay_s, self.message = off, delay_s, message
        self.cond = sv.conds.watch(name)

    def update(self, ctx: Context, sp: float, pv: float) -> bool:
        """Judge the drive on its setpoint `sp` and measured value `pv` (read by the caller:
        the fill depth's are `Shared`)."""
        sv, cfg = self.sv, self.sv.cfg
        if self.off == "impeller":
            present = pv < cfg.impeller_share * sp
        elif self.off == "turret":
            present = abs(pv - sp) > cfg.turret_offset_rpm
        else:
            present = abs(sp - pv) > cfg.stiction_mm
        cond = self.cond
        if not present and not cond.active and cond.since is None:
            return False  # nothing to debounce: the update would change nothing (`watch`)
        return sv.conds.update(
            ctx.now, self.name, present, self.delay_s, lambda: self.message.format(pv=pv, sp=sp)
        )


class Density:
    """Fault 9: tablet weight per mm of fill depth moves away from its usual (bulk density)."""

    def __init__(self, sv: Supervisor) -> None:
        self.sv = sv
        self.base = Ewma(sv.cfg.density_base_s)
        self.cond = sv.conds.watch("lot_density_change")

    def update(self, ctx: Context, actions: list[Action]) -> None:
        sv, cfg = self.sv, self.sv.cfg
        depth = sv.shared.depth_pv
        if not (sv.gate.weights and math.isfinite(depth) and depth > 0):
            return
        ratio = sv.gate.weight_mean / depth
        base = self.base.value
        shift = ratio / base - 1.0 if base else 0.0
        present = abs(shift) > cfg.density_shift
        # A bridge the drive copes with leaves the blend as it was: the feeder delivers its
        # setpoint. One that starved the feeder made it lean, and its lean blend is still
        # flushing through long after (random campaign 68 compound: a +4.2 % denser lot
        # under a 23 % bridge the drive coped with was judged by the 8 % limit of a
        # disturbed blend, and never raised).
        now, starved_at = ctx.now, sv.detectors.bridging.starved_at
        blend_quiet = (
            now - sv.blend.last_refill > cfg.quiet_after_refill_s
            and now - starved_at > cfg.steady_after_bridge_s
        )
        if not (ctx.settled and blend_quiet) or sv.gate.planner.windows:
            # Weight per mm is a poorer measure of the density while the line diverts or a
            # refill or a starved feeder disturbs the blend: the usual is not learnt and the
            # verdict is not cleared (random campaign 10: cleared while diverting, it learnt
            # the new lot's density as usual, and the old lot's return read as a change of
            # density for hours). A shift no blend upset can make is still raised (random
            # campaigns 8 and 19: lots 22-24 % lighter, paired with a bridge or diverted for
            # their light tablets, were never judged). The blend quiet, only the weight
            # loop's transients are in it: a smaller shift is a new density.
            limit = cfg.density_shift_diverting if blend_quiet else cfg.density_shift_disturbed
            if base and ctx.settled and abs(shift) > limit:
                sv.conds.update(
                    ctx.now,
                    "lot_density_change",
                    True,
                    cfg.density_confirm_s,
                    lambda: (
                        f"{shift:+.1%} tablet weight per mm of fill depth: the blend's "
                        "bulk density changed; the weight loop trims fill depth"
                    ),
                )
            elif (cond := self.cond).since is not None:
                if present != cond.active:
                    # A verdict on its way waits, its clock stopped, while the shift still
                    # says it: the acceptance run's denser lot (+6.5 %) made the gate divert
                    # on and off for minutes, and each window began the 30 s afresh; raised
                    # 360-396 s after the onset in 3 of 16 in-process runs through the stack's
                    # timing, never within the 600 s of its window in one CI run.
                    sv.conds.hold("lot_density_change", ctx.dt)
                else:
                    sv.conds.update(ctx.now, "lot_density_change", cond.active, 0.0, "")
            return
        cond, changed = self.cond, False
        if cond.moved_by(present):  # (else no change: `watch`)
            changed = sv.conds.update(
                ctx.now,
                "lot_density_change",
                present,
                cfg.density_confirm_s,
                lambda: (
                    f"{shift:+.1%} tablet weight per mm of fill depth: the blend's "
                    "bulk density changed; the weight loop trims fill depth"
                ),
            )
        if not changed:
            self.base.update(ratio, ctx.dt)


class PunchWear:
    """Fault 10: tablets thicker than the punch gap explains."""

    def __init__(self, sv: Supervisor) -> None:
        self.sv = sv
        self.base = Ewma(sv.cfg.wear_base_s)
        p = sv.cfg.press
        self.tags = (f"{p}.thickness", f"{p}.main_gap_sp")
        self.cond = sv.conds.watch("punch_wear")

    def update(self, ctx: Context, actions: list[Action]) -> None:
        sv, cfg = self.sv, self.sv.cfg
        thickness, gap_sp = sv.tel.v(self.tags[0]), sv.tel.v(self.tags[1])
        if not (math.isfinite(thickness) and gap_sp > 0):
            return
        if not ctx.settled:
            return  # a restart: the verdict stands, the usual is not learnt from a start-up
        base = self.base.value
        wear_mm = thickness - (base or thickness / gap_sp) * gap_sp
        cond, present = self.cond, wear_mm > cfg.wear_mm
        worn = False  # (unless an update could change something: `Conditions.watch`)
        if cond.moved_by(present):
            worn = sv.conds.update(
                ctx.now,
                "punch_wear",
                present,
                cfg.wear_confirm_s,
                lambda: (
                    f"tablets {wear_mm:.3f} mm thicker than the punch gap explains: "
                    "punch wear; maintenance due, hardness loop compensating"
                ),
            )
        if not worn:
            self.base.update(thickness / gap_sp, ctx.dt)


class RefillDisturbance:
    """Fault 1: a refill whose flow bump is well beyond an ordinary refill's.

    Not a diversion soon after an API refill as such: an ordinary refill's own bump takes the
    predicted content to 103-106 % LC, into the guard band (random campaigns 1-30: 69 false
    alarms, most of them such diversions, where an ordinary API refill's flow bump is 7-13 %
    and a refill disturbance's 22 % and more)."""

    def __init__(self, sv: Supervisor) -> None:
        self.sv = sv
        self.cond = sv.conds.watch("refill_disturbance")

    def update(self, ctx: Context, actions: list[Action]) -> None:
        sv, cfg, now = self.sv, self.sv.cfg, ctx.now
        windows = sv.gate.planner.windows
        blend = sv.blend
        # A feeder refilled lately whose flow's bump went past `refill_spike` (a loop, not a
        # list and a generator: measured with `Loops.run`'s, see there)
        disturbed = False
        for feeder, refilled in blend.refilled_at.items():
            if (
                now - refilled < cfg.refill_window_s
                and blend.refill_peak.get(feeder, 0.0) > cfg.refill_spike
            ):
                disturbed = True
                break
        if disturbed:
            sv.conds.update(
                now,
                "refill_disturbance",
                True,
                0.0,
                "blend disturbed by a feeder refill: diverting the predicted window",
            )
        elif not windows and self.cond.moved_by(False):  # (`watch`)
            passed = "refill disturbance has passed"
            sv.conds.update(now, "refill_disturbance", False, cfg.refill_clear_s, "", passed)


class Detectors:
    """Every detector, run in order every `detector_period_s` of production (and at its
    first decision)."""

    def __init__(self, sv: Supervisor) -> None:
        self.sv = sv
        cfg = sv.cfg
        self.last_run = -math.inf
        self.owed_dt = 0.0  # plant s of decisions since the last run, in this production run
        # One context, filled in afresh at each run (no detector keeps it)
        self._ctx = Context(0.0, 0.0, settled=False, steady=False, quiet=False)
        b, p, api = cfg.blender, cfg.press, cfg.api_feeder
        # (Its feed factor and mode are `Shared`.)
        self._api_tags = (f"{api}.hopper_mass", f"{api}.drive_command")
        self.bridging = Bridging(sv)
        self.reconciliation = Reconciliation(sv)
        self.nir_dropout = NirDropout(sv)
        self.feeder_noise = FeederNoise(sv)
        self.impeller = Mismatch(
            sv,
            "impeller_slowdown",
            f"{b}.speed_sp",
            f"{b}.speed_pv",
            "impeller",
            cfg.impeller_confirm_s,
            "impeller at {pv:.0f} rpm for a set {sp:.0f} rpm: "
            "residence time rising; RTD model follows the measured hold-up",
        )
        self.turret = Mismatch(
            sv,
            "turret_speed_step",
            f"{p}.turret_speed_sp",
            f"{p}.turret_speed_pv",
            "turret",
            cfg.turret_confirm_s,
            "turret at {pv:.2f} rpm for a set {sp:.2f} rpm: "
            "rebalancing the press rate on the hopper level",
        )
        self.stiction = Mismatch(
            sv,
            "fill_depth_stiction",
            f"{p}.fill_depth_sp",
            f"{p}.fill_depth_pv",
            "stiction",
            cfg.stiction_confirm_s,
            "fill depth at {pv:.3f} mm for a set {sp:.3f} mm: actuator "
            "sticking; widening the weight loop's deadband to stop it hunting",
        )
        self.density = Density(sv)
        self.punch_wear = PunchWear(sv)
        self.refill = RefillDisturbance(sv)

    def run(self, now: float, dt: float, actions: list[Action]) -> None:
        sv, cfg = self.sv, self.sv.cfg
        since = sv.producing_since
        if since is not None and self.last_run >= since:  # ran already in this production run
            self.owed_dt += dt
            if now - self.last_run < cfg.detector_period_s - 1e-6:
                return
            dt, self.owed_dt = self.owed_dt, 0.0
        else:
            self.owed_dt = 0.0
        self.last_run = now
        settled = since is not None and now - since > cfg.settle_s
        ctx = self._ctx
        ctx.now, ctx.dt, ctx.settled, ctx.steady, ctx.quiet = now, dt, settled, False, False
        v, tags, shared = sv.tel.v, self._api_tags, sv.shared
        ctx.hopper, ctx.drive = v(tags[0]), v(tags[1])
        self.bridging.update(ctx, actions)
        bridge = self.bridging.cond
        # Feeder statistics mean something only away from refills, bridges and a saturated drive.
        ctx.steady = (
            not bridge.active
            and now - bridge.cleared_at > cfg.steady_after_bridge_s
            and ctx.drive < cfg.drive_saturated_pct
        )
        ctx.quiet = ctx.steady and now - sv.blend.last_refill > cfg.quiet_after_refill_s
        self.reconciliation.update(ctx, actions)
        self.nir_dropout.update(ctx, actions)
        self.feeder_noise.update(ctx, actions)
        impeller, turret = self.impeller, self.turret
        impeller.update(ctx, v(impeller.sp_tag), v(impeller.pv_tag))
        turret.update(ctx, v(turret.sp_tag), v(turret.pv_tag))
        if self.stiction.update(ctx, shared.depth_sp, shared.depth_pv):
            sv.loops.weight_deadband = max(sv.loops.weight_deadband, cfg.stiction_deadband_mg)
        else:
            sv.loops.weight_deadband = cfg.weight_deadband_mg
        self.density.update(ctx, actions)
        self.punch_wear.update(ctx, actions)
        self.refill.update(ctx, actions)
