"""The supervisory controller: telemetry in, setpoint commands and alarms out, each with a reason.

It sees what a real plant shows (tags with quality and source time), never the twin's ground
truth, and acts only by asking for setpoint changes and line commands. Call `observe` for each
sample as it arrives and `step(now)` once a second of plant time.

What it does, in the order `step` does it:
1. holds everything when telemetry is stale (fault 14) or the line is not producing;
2. estimates the blend leaving the blender twice: a robust NIR median, and the feeders' API ratio
   through the blender's RTD; reconciling the two tells a probe fault from a process fault;
3. predicts each tablet's content when the powder seen now reaches the dies (the feed frame is
   plug flow, so the delay is level over draw) and diverts exactly those windows, plus a margin;
4. runs the loops: API ratio from NIR at constant total (L2), weight by fill depth, press rate
   by turret speed holding the hopper level, hardness by punch gap, impeller speed (L1);
5. detects faults from their signatures and responds as `shared/domain.md` says.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from operator import itemgetter
from typing import Any

from controller import laws
from controller.config import ControllerConfig
from controller.diversion import DiversionPlanner, Window
from controller.estimators import (
    Ewma,
    RobustNir,
    RollingStats,
    RtdPredictor,
    arrival_time,
    content_pct,
)

PRODUCING_STATES = (2, 3)  # line.state: producing, diverting
STARTING = 1
HELD_STATES = (1, 4)  # starting, stopping: the line holds the gate at reject
_TIME = itemgetter(2)  # a reading's source time
REJECT, ACCEPT = 1, 0  # diverter.position_sp
FB_REJECT = 2  # diverter.position_pv


@dataclass(frozen=True, slots=True)
class Action:
    """A command the controller wants sent: a setpoint write, a line command or a quarantine.

    A quarantine flags in genealogy the tablets pressed in a window: its value is the window
    (start, end) in the telemetry's time (the source times `step` is given).
    """

    kind: str  # "setpoint", "line" or "quarantine"
    target: str  # tag id, the line command (start, stop, abort, reset), or "genealogy"
    value: Any
    reason: str


@dataclass(frozen=True, slots=True)
class Alarm:
    """A detection, raised or cleared. `name` is the fault kind the controller believes in."""

    time: float
    name: str
    raised: bool
    message: str


@dataclass(frozen=True, slots=True)
class _Reading:
    value: Any
    quality: str
    time: float


class _TagView(Mapping[str, _Reading]):
    """The newest reading of every tag, read-only; kept as plain tuples underneath, because the
    supervisor takes some sixty of them every plant second."""

    def __init__(self, raw: dict[str, tuple[Any, str, float]]) -> None:
        self._raw = raw

    def __getitem__(self, tag: str) -> _Reading:
        return _Reading(*self._raw[tag])

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


@dataclass(slots=True)
class _Condition:
    """A detector's debounced state."""

    since: float | None = None
    active: bool = False
    raised_at: float = field(default=-math.inf)
    cleared_at: float = field(default=-math.inf)


def _explains(offset: float | None, gap: float, limit: float) -> bool:
    """A diagnosed offset explains a gap of its own sign up to its size (plus the limit): the
    averaged gap moves toward the offset when the fault begins, and back when it ends."""
    if offset is None or offset * gap < 0:
        return False
    return abs(gap) <= abs(offset) + limit


def _noise_message(feeder: str, rsd: float, usual: float | None) -> str:
    return (
        f"{feeder} flow RSD {rsd:.1%} is {rsd / (usual or rsd):.1f}x its usual: "
        "widening the diversion guard band"
    )


class Supervisor:
    def __init__(self, config: ControllerConfig | None = None, *, enabled: bool = True) -> None:
        self.cfg = cfg = config or ControllerConfig()
        self.enabled = enabled
        self._tags: dict[str, tuple[Any, str, float]] = {}  # tag -> (value, quality, time)
        self.tags: Mapping[str, _Reading] = _TagView(self._tags)
        self._nir_tag = f"{cfg.nir}.api_pct"
        self.newest = -math.inf
        self.nir = RobustNir(stale_s=cfg.nir_stale_s)
        self.rtd = RtdPredictor(cfg.blender_tanks)
        self.planner = DiversionPlanner(cfg.margin_s, cfg.gate_lead_s)
        self.disagreement = Ewma(cfg.reconcile_window_s)
        self.nir_slow = Ewma(30.0)
        self.feed_factor_base = Ewma(1800.0)
        self.feed_factor_fast = Ewma(120.0)
        self.weight_per_depth_base = Ewma(1800.0)
        self.thickness_per_gap_base = Ewma(3600.0)
        self.flow_rsd_base: dict[str, Ewma] = {}
        self.flows: dict[str, RollingStats] = {}
        self.weights: deque[float] = deque(maxlen=30)
        self.weight_mean = math.nan  # of the last ten weights, set by `_divert` each step
        self.hardness: deque[float] = deque(maxlen=30)
        self.conditions: dict[str, _Condition] = {}
        self.noise_conditions: list[_Condition] = []  # one per feeder, in `conditions` too
        self.alarms: list[Alarm] = []
        self.nir_suspect = False
        self.gate_commanded: tuple[int, float] | None = None
        self.level_integral = 0.0
        self.weight_deadband = cfg.weight_deadband_mg
        self.last_run: dict[str, float] = {}
        self.last_step = -math.inf
        self.dt = 1.0
        self.interval_s = 1.0  # plant s between decisions, as the telemetry comes
        self.producing_since: float | None = None
        self.estimate: dict[str, float | None] = {}
        self.refill_lots: dict[str, float] = {}  # feeder -> lot number of its last refill
        self.refilled_at: dict[str, float] = {}  # feeder -> plant time of its last refill
        self.command_latency_s = 0.0  # plant seconds from a command to its effect (see note_...)
        self.api_compensation = 1.0  # API share over the recipe's, while a load cell drifts
        self.feeder_rate = 0.0
        self.feeder_history: deque[tuple[float, float]] = deque(maxlen=600)  # (t, c_feeders)
        self.judged_step: tuple[float, float] | None = None  # the NIR step last judged
        self.probe_offset: float | None = None  # % w/w the probe is believed off, if suspect
        self.load_cell_gap: float | None = None  # NIR - feeders a drifting load cell explains
        self.startup_bad_at: float | None = None  # blend last judged out of spec in start-up
        self.divert_since: float | None = None  # start of the current diversion
        self.accept_since: float | None = None  # start of the current spell at accept
        self.failsafe_uncertainty = math.hypot(cfg.nir_uncertainty_pct, cfg.feeder_uncertainty_pct)

    # Input -------------------------------------------------------------------------------------
    def observe(self, tag: str, value: Any, quality: str, source_time: float) -> None:
        self._tags[tag] = (value, quality, source_time)
        self.newest = max(self.newest, source_time)
        if tag == self._nir_tag:
            # Between two spectra the blend can move by what the feeders' RTD prediction moves,
            # and a little more: the spike test allows three times that.
            move = 3.0 * self.feeder_rate * 2.0
            self.nir.update(float(value), quality == "good", source_time, move)

    def observe_all(self, readings: Mapping[str, tuple[Any, str, float]]) -> None:
        """`observe` for a whole snapshot at once: tag -> (value, quality, source time)."""
        if not readings:
            return
        self._tags.update(readings)
        self.newest = max(self.newest, *map(_TIME, readings.values()))
        nir = readings.get(self._nir_tag)
        if nir is not None:
            value, quality, source_time = nir
            move = 3.0 * self.feeder_rate * 2.0  # as in `observe`
            self.nir.update(float(value), quality == "good", source_time, move)

    def _v(self, name: str, default: float = math.nan) -> float:
        reading = self._tags.get(name)
        if reading is None or reading[0] is None:
            return default
        return float(reading[0])

    def _good(self, name: str) -> bool:
        reading = self._tags.get(name)
        return reading is not None and reading[1] == "good"

    # Output helpers ----------------------------------------------------------------------------
    def _alarm(self, now: float, key: str, raised: bool, message: str) -> None:
        # A condition key may carry a qualifier after a colon (one per feeder); the alarm's
        # name is the fault kind it points at.
        self.alarms.append(Alarm(now, key.split(":", maxsplit=1)[0], raised, message))

    def _condition(
        self,
        now: float,
        name: str,
        present: bool,
        delay_s: float,
        message: str | Callable[[], str],
        clear_message: str = "",
    ) -> bool:
        """Debounce a detector: raise after `delay_s` present, clear after `delay_s` absent.

        `message` may be a function that words it: worked out only when the alarm is raised."""
        cond = self.conditions.get(name)
        if cond is None:
            cond = self.conditions[name] = _Condition()
            if name.startswith("feeder_noise"):
                self.noise_conditions.append(cond)
        if present != cond.active:
            if cond.since is None:
                cond.since = now
            if now - cond.since >= delay_s:
                cond.active, cond.since = present, None
                if present:
                    cond.raised_at = now
                else:
                    cond.cleared_at = now
                if present:
                    text = message if isinstance(message, str) else message()
                else:
                    text = clear_message or f"{name} cleared"
                self._alarm(now, name, present, text)
        else:
            cond.since = None
        return cond.active

    def _due(self, loop: str, now: float, period: float) -> bool:
        if now - self.last_run.get(loop, -math.inf) >= period:
            self.last_run[loop] = now
            return True
        return False

    @property
    def last_refill(self) -> float:
        """Plant time of the last refill of any feeder."""
        return max(self.refilled_at.values(), default=-math.inf)

    def note_command_latency(self, plant_s: float) -> None:
        """A command's round trip, in plant seconds: slowly forgotten, quickly raised."""
        self.command_latency_s = max(plant_s, 0.95 * self.command_latency_s)
        self._set_gate_lead()

    @property
    def reaction_s(self) -> float:
        """Plant seconds from a command to seeing its effect in telemetry: the round trip there
        and back, and the telemetry's own interval (an accelerated plant, seen through OPC UA,
        reports every few plant seconds rather than every second)."""
        return 2 * self.command_latency_s + self.interval_s

    def _set_gate_lead(self) -> None:
        # Between two decisions nothing can be commanded: a window that opens before the next
        # one must be served by this one. And each decision judges the material of the whole
        # interval since the last one, not only its own instant: the margin grows by that.
        self.planner.lead_s = self.cfg.gate_lead_s + self.command_latency_s + self.interval_s
        self.planner.margin_s = self.cfg.margin_s + max(self.interval_s - 1.0, 0.0)

    def take_alarms(self) -> list[Alarm]:
        alarms, self.alarms = self.alarms, []
        return alarms

    # The step ----------------------------------------------------------------------------------
    def step(self, now: float) -> list[Action]:
        """Decide what to do at plant time `now`; returns the commands to send."""
        dt = min(max(now - self.last_step, 0.0), 10.0) if self.last_step > -math.inf else 1.0
        self.last_step = now
        self.dt = dt  # plant s since the last decision: averages weigh by time, not by calls
        self.interval_s = max(dt, 0.98 * self.interval_s)  # quickly raised, slowly forgotten
        self._set_gate_lead()
        cfg = self.cfg
        if self._condition(
            now,
            "stale_telemetry",
            now - self.newest > cfg.stale_telemetry_s,
            0.0,
            "telemetry is stale: holding the last good setpoints",
            "telemetry is flowing again",
        ):
            return []
        state = self._v(f"{cfg.line}.state", -1)
        if state not in PRODUCING_STATES:
            self.producing_since = None
            self.gate_commanded = None
            self.divert_since = self.accept_since = None
            self.planner.windows.clear()
            if state == STARTING:
                # The line diverts start-up material itself, but what fills the feed frame in
                # the last minute of start-up is pressed once production begins: judge it now.
                self._estimate(now, dt)
                concentration, extra = self._blend()
                content = (
                    None
                    if concentration is None
                    else content_pct(cfg.target_weight_mg, concentration, cfg.label_claim_mg)
                )
                if content is None or not self._content_ok(content, extra):
                    self.startup_bad_at = now
            return self._check_held_gate(now, state)
        if self.producing_since is None:
            self.producing_since = now
            self._judge_startup_material(now)
        actions: list[Action] = []
        self._estimate(now, dt)
        self._divert(now, actions)
        if self.enabled and not any(a.kind == "line" for a in actions):
            self._loops(now, actions)
        self._detect(now, actions)
        return actions if self.enabled else []

    def _content_ok(self, content: float, extra: float) -> bool:
        cfg = self.cfg
        return (
            cfg.content_low_pct + cfg.guard_pct + extra
            <= content
            <= cfg.content_high_pct - cfg.guard_pct - extra
        )

    def _judge_startup_material(self, now: float) -> None:
        """Production begins: divert the feed frame's content if blend judged out of spec
        during start-up may be in it (everything blended within its plug-flow delay)."""
        cfg = self.cfg
        bad_at, self.startup_bad_at = self.startup_bad_at, None
        level = self._v(f"{cfg.feed_frame}.level", cfg.level_sp_kg)
        rate = self._v(f"{cfg.press}.production_rate", 0.0)
        draw = rate / 3600.0 * cfg.target_weight_mg * 1e-6
        delay = level / draw if draw > 0 else cfg.startup_judge_s
        if bad_at is not None and now - bad_at <= delay + cfg.startup_judge_s:
            self.planner.flag_span(
                now, now + delay, "start-up blend out of spec is in the feed frame: diverting it"
            )

    def _check_held_gate(self, now: float, state: float) -> list[Action]:
        """While starting or stopping the line holds the gate at reject; if the gate says
        accept, start-up or run-out material is reaching accept: stop every drive."""
        cfg = self.cfg
        held = state in HELD_STATES and self._v(f"{cfg.diverter}.position_pv", FB_REJECT) == 0
        cond = self.conditions.get("diverter_stuck")
        seen = cond.since if cond is not None and cond.since is not None else now
        if (
            self._condition(
                now,
                "diverter_stuck",
                held,
                cfg.gate_confirm_s + self.reaction_s,
                "diverter at accept while the line holds it at reject: aborting",
            )
            and held
            and self.enabled
        ):
            why = "diverter stuck at accept while the line holds it at reject"
            # The gate showed accept one telemetry interval after tablets may have passed it.
            return [
                Action("line", "abort", None, why),
                self._quarantine(seen - self.interval_s, now, why),
            ]
        return []

    # Estimation --------------------------------------------------------------------------------
    def _estimate(self, now: float, dt: float) -> None:
        cfg = self.cfg
        feeders = (cfg.api_feeder, *cfg.other_feeders)
        flows = {}
        for feeder in feeders:
            pv, sp = f"{feeder}.mass_flow_pv", f"{feeder}.mass_flow_sp"
            # While refilling, the reading is the feeder's own volumetric estimate: still the
            # best there is, as long as it is there at all.
            flows[feeder] = self._v(pv) if pv in self._tags else self._v(sp)
            # A short top-up can start and end between two samples of an accelerated plant;
            # the lot number it leaves behind cannot be missed.
            lot = self._v(f"{feeder}.refill_lot", -1.0)
            if self._v(f"{feeder}.refilling", 0) or lot != self.refill_lots.get(feeder, lot):
                self.refilled_at[feeder] = now
            self.refill_lots[feeder] = lot
            if self._good(pv):
                # Flow against its own setpoint, so the controller's trims are not noise.
                error = self._v(pv) / self._v(sp) - 1.0 if self._v(sp) > 0 else 0.0
                stats = self.flows.get(feeder)
                if stats is None:
                    stats = self.flows[feeder] = RollingStats(300)
                stats.append(error)
        total = sum(flows.values())
        ratio = 100.0 * flows[cfg.api_feeder] / total if total > 0 else math.nan
        residence = self._v(f"{cfg.blender}.residence_time", 60.0) or 60.0
        before = self.rtd.value
        c_feeders = self.rtd.update(ratio, residence, dt) if math.isfinite(ratio) else None
        if c_feeders is not None and before is not None and dt > 0:
            self.feeder_rate = abs(c_feeders - before) / dt
            self.feeder_history.append((now, c_feeders))
        c_nir = self.nir.estimate(now)
        step = self.nir.last_step
        if step is not None and step is not self.judged_step:
            # Each step is judged once, however far apart the decisions are: telemetry of an
            # accelerated plant comes every few plant seconds, not every second.
            self.judged_step = step
            step_time, size = step
            # A real change of the blend shows in the feeders' prediction around the same
            # time; a probe fault does not. Only that span counts, in plant time: a feeder
            # transient a minute earlier says nothing about this step.
            around = [c for t, c in self.feeder_history if t >= step_time - cfg.nir_step_window_s]
            moved = max(around) - min(around) if around else 0.0
            if not self.nir_suspect and moved < 0.3 * abs(size):
                self.nir_suspect = True
                self.probe_offset = size
                self._alarm(
                    now,
                    "nir_bias",
                    True,
                    f"NIR reading stepped by {size:+.2f} % w/w with "
                    "no change in the feeders: probe fault, not trimming feeders on it",
                )
        if c_nir is not None and c_feeders is not None:
            gap = self.disagreement.update(c_nir - c_feeders, dt)
            if (
                self.nir_suspect
                and abs(gap) < cfg.reconcile_limit_pct / 2
                and (now - (self.nir.last_step or (now, 0.0))[0] > cfg.reconcile_window_s)
            ):
                self.nir_suspect = False
                self.probe_offset = None
                self._alarm(now, "nir_bias", False, "NIR agrees with the feeders again")
        if c_nir is not None:
            self.nir_slow.update(c_nir, dt)
        self.estimate = {"nir": c_nir, "feeders": c_feeders}

    def _blend(self) -> tuple[float | None, float]:
        """The concentration to trust now and the extra guard band its source needs."""
        c_nir, c_feeders = self.estimate.get("nir"), self.estimate.get("feeders")
        noisy = any(c.active for c in self.noise_conditions)
        extra = 0.5 if noisy else 0.0
        failsafe = self.conditions.get("estimates_disagree")
        if failsafe is not None and failsafe.active and c_nir is not None and c_feeders is not None:
            # Fail-safe: one of the two is wrong and nothing says which. Judge the blend by the
            # one further from target, with the guard band widened by half the disagreement.
            cfg = self.cfg
            target = 100.0 * cfg.label_claim_mg / cfg.target_weight_mg
            worst = max((c_nir, c_feeders), key=lambda c: abs(c - target))
            gap_lc = abs(c_nir - c_feeders) * cfg.target_weight_mg / cfg.label_claim_mg
            return worst, extra + cfg.failsafe_guard_pct + gap_lc / 2
        if c_nir is not None and not self.nir_suspect:
            return c_nir, extra
        if c_feeders is not None:
            # Without a trusted probe, the feeders' ratio carries the known reconciliation offset
            # only when the probe is sound and a feeder is the one at fault.
            offset = self.disagreement.value or 0.0
            load_cell = self.conditions.get("load_cell_drift", _Condition()).active
            return c_feeders + (offset if load_cell else 0.0), extra + 1.0
        return None, extra + 1.0

    # Diversion ---------------------------------------------------------------------------------
    def _check_estimates(self, now: float) -> None:
        """Fail-safe: the NIR and the feeders disagree beyond their combined uncertainty and no
        single diagnosed fault explains the gap with confirming evidence (see ControllerConfig)."""
        c_nir, c_feeders = self.estimate.get("nir"), self.estimate.get("feeders")
        limit = self.failsafe_uncertainty
        gap = self.disagreement.value
        present = False
        if c_nir is not None and c_feeders is not None and gap is not None and abs(gap) > limit:
            probe = self.probe_offset if self.nir_suspect else None
            load_cell = self.load_cell_gap
            present = not (_explains(probe, gap, limit) or _explains(load_cell, gap, limit))
        self._condition(
            now,
            "estimates_disagree",
            present,
            self.cfg.failsafe_confirm_s,
            lambda: (
                f"NIR and feeders disagree by {gap or 0.0:+.2f} % w/w (combined uncertainty "
                f"{limit:.2f}) and no diagnosed fault explains it: judging the blend by the worse "
                "of the two, guard band widened"
            ),
            "NIR and feeders agree again, or a diagnosis explains their gap",
        )

    def _divert(self, now: float, actions: list[Action]) -> None:
        cfg = self.cfg
        self._check_estimates(now)
        weights = self.weights
        weight_tag = f"{cfg.press}.tablet_weight"
        if self._good(weight_tag):
            weights.append(self._v(weight_tag))
        if self._good(f"{cfg.press}.hardness"):
            self.hardness.append(self._v(f"{cfg.press}.hardness"))
        if not weights:
            return
        # The last ten tablets' mean weight: worked out once a step, for every loop and detector.
        self.weight_mean = weight = sum(list(weights)[-10:]) / min(10, len(weights))
        rate = self._v(f"{cfg.press}.production_rate", 0.0)
        draw = rate / 3600.0 * weight * 1e-6
        level = self._v(f"{cfg.feed_frame}.level", cfg.level_sp_kg)
        concentration, extra = self._blend()
        if concentration is None:
            self.planner.flag(now, "no trustworthy estimate of the blend: diverting")
        else:
            content = content_pct(weight, concentration, cfg.label_claim_mg)
            if not self._content_ok(content, extra):
                arrives = arrival_time(now - 2.0, level, draw) or now
                self.planner.flag(arrives, f"predicted content {content:.1f} % LC at the press")
        if level < cfg.level_low_kg:
            self.planner.flag(now, f"press hopper at {level:.3f} kg: die fill not assured")
        w_low = cfg.target_weight_mg * (1 - cfg.weight_tolerance + cfg.weight_guard)
        w_high = cfg.target_weight_mg * (1 + cfg.weight_tolerance - cfg.weight_guard)
        if not w_low <= weight <= w_high:
            self.planner.flag(now, f"tablet weight {weight:.0f} mg near its limit")
        if self.hardness:
            hardness = sum(list(self.hardness)[-10:]) / min(10, len(self.hardness))
            if not cfg.hardness_low_n + 5 <= hardness <= cfg.hardness_high_n - 5:
                self.planner.flag(now, f"hardness {hardness:.0f} N near its limit")
        window = self.planner.active(now)
        self._gate(now, window, actions)

    def _gate(self, now: float, window: Window | None, actions: list[Action]) -> None:
        cfg = self.cfg
        sp_tag = f"{cfg.diverter}.position_sp"
        current = int(self._v(sp_tag, ACCEPT))
        want = REJECT if window is not None else ACCEPT
        # What was last commanded rules over the setpoint's reading, which lags a command in
        # flight: a window that reopens before the accept just sent shows up needs its reject.
        commanded = self.gate_commanded[0] if self.gate_commanded is not None else current
        if want != commanded or (self.gate_commanded is None and want != current):
            reason = window.reason if window is not None else "diversion window has passed"
            value = "reject" if want == REJECT else "accept"
            actions.append(Action("setpoint", sp_tag, value, reason))
            self.gate_commanded = (want, now)
        elif self.gate_commanded is None:
            self.gate_commanded = (want, now)  # the setpoint already says so
        self._limit_diversion(now, want, actions)
        # A gate asked to reject that does not report reject is stuck: tablets that must not
        # be accepted are reaching accept. Stop every drive now (domain.md, fault 13).
        position = self._v(f"{cfg.diverter}.position_pv", FB_REJECT)
        stuck = (
            self.enabled  # watching only, nobody asked the gate to move
            and self.gate_commanded is not None
            and self.gate_commanded[0] == REJECT
            and position != FB_REJECT
            and now - self.gate_commanded[1] > cfg.gate_confirm_s + self.reaction_s
        )
        if (
            self._condition(
                now,
                "diverter_stuck",
                stuck,
                0.0,
                "diverter does not move to reject: aborting the line",
            )
            and stuck
        ):
            why = "diverter stuck at accept while material must be rejected"
            actions.append(Action("line", "abort", None, why))
            since = self.gate_commanded[1] if self.gate_commanded is not None else now
            actions.append(self._quarantine(since, now, why))

    def _limit_diversion(self, now: float, want: int, actions: list[Action]) -> None:
        """Fail-safe: a line that diverts for longer than `max_divert_s` (short spells at accept
        included) is stopped, with the reason, instead of diverting product for an hour."""
        cfg = self.cfg
        if want == REJECT:
            self.accept_since = None
            if self.divert_since is None:
                self.divert_since = now
        else:
            if self.accept_since is None:
                self.accept_since = now
            if now - self.accept_since > cfg.divert_gap_s:
                self.divert_since = None
        if self.divert_since is None or now - self.divert_since <= cfg.max_divert_s:
            return
        why = (
            f"diverting for {now - self.divert_since:.0f} s, longer than the "
            f"{cfg.max_divert_s:g} s allowed: the line is not in a state of control; stopping"
        )
        if self.enabled and not any(a.kind == "line" for a in actions):
            actions.append(Action("line", "stop", None, why))
        self._alarm(now, "diverting_too_long", True, why)
        self.divert_since = None

    def _quarantine(self, since: float, now: float, why: str) -> Action:
        """Flag in genealogy what a stuck gate let through (domain.md, fault 13): the tablets
        pressed from `since` (less the diversion margin) until the abort sent now has taken
        effect (a reaction time later; the plant cuts a window that ends in its future)."""
        start = max(since - self.planner.margin_s, 0.0)
        end = now + self.reaction_s
        reason = f"{why}: tablets that may have reached accept are held back"
        return Action("quarantine", "genealogy", (round(start, 3), round(end, 3)), reason)

    # Loops -------------------------------------------------------------------------------------
    def _loops(self, now: float, actions: list[Action]) -> None:
        cfg = self.cfg
        if self._due("weight", now, cfg.weight_period_s) and len(self.weights) >= 10:
            weight = self.weight_mean
            sp = self._v(f"{cfg.press}.fill_depth_sp")
            new = laws.weight_trim(
                sp, weight, cfg.target_weight_mg, cfg.weight_gain_mm_per_mg, self.weight_deadband
            )
            if new is not None:
                actions.append(
                    Action(
                        "setpoint",
                        f"{cfg.press}.fill_depth_sp",
                        round(new, 4),
                        f"tablet weight {weight:.1f} mg, target {cfg.target_weight_mg:g} mg",
                    )
                )
        if self._due("rate", now, cfg.rate_period_s) and self.weights:
            self._rate_loop(now, actions)
        if self._due("concentration", now, cfg.concentration_period_s):
            self._concentration_loop(now, actions)
        if self._due("hardness", now, cfg.hardness_period_s) and len(self.hardness) >= 20:
            hardness = sum(self.hardness) / len(self.hardness)
            gap = self._v(f"{cfg.press}.main_gap_sp")
            new = laws.hardness_trim(
                gap,
                hardness,
                cfg.hardness_sp_n,
                cfg.hardness_gain_mm_per_n,
                cfg.hardness_deadband_n,
            )
            if new is not None:
                actions.append(
                    Action(
                        "setpoint",
                        f"{cfg.press}.main_gap_sp",
                        round(new, 4),
                        f"hardness {hardness:.0f} N, target {cfg.hardness_sp_n:g} N",
                    )
                )
        if self._due("speed", now, 10.0):
            sp, pv = self._v(f"{cfg.blender}.speed_sp"), self._v(f"{cfg.blender}.speed_pv")
            new = laws.speed_restore(sp, pv, cfg.blender_speed_rpm, cfg.blender_speed_max_rpm)
            if new is not None:
                actions.append(
                    Action(
                        "setpoint",
                        f"{cfg.blender}.speed_sp",
                        round(new, 1),
                        f"impeller at {pv:.0f} rpm for a set {sp:.0f} rpm: "
                        f"restoring the validated {cfg.blender_speed_rpm:g} rpm",
                    )
                )

    def _rate_loop(self, now: float, actions: list[Action]) -> None:
        cfg = self.cfg
        weight = self.weight_mean
        if weight <= 0.0:
            return  # no tablets weighed: nothing to match the press rate to
        feeders = (cfg.api_feeder, *cfg.other_feeders)
        total = sum(self._v(f"{f}.mass_flow_sp", 0.0) for f in feeders)
        level = self._v(f"{cfg.feed_frame}.level", cfg.level_sp_kg)
        error = level - cfg.level_sp_kg
        self.level_integral = laws.clamp(
            self.level_integral + 0.003 * error * cfg.rate_period_s, -0.2, 0.2
        )
        speed = laws.turret_speed(
            total, weight, cfg.stations, level, cfg.level_sp_kg, cfg.level_gain
        ) * (1.0 + self.level_integral)
        speed = laws.clamp(speed, 11.0, 35.0)
        sp = self._v(f"{cfg.press}.turret_speed_sp")
        if abs(speed - sp) >= 0.05:
            actions.append(
                Action(
                    "setpoint",
                    f"{cfg.press}.turret_speed_sp",
                    round(speed, 3),
                    f"press rate to feed {total:.2f} kg/h at {weight:.0f} mg, "
                    f"hopper {level:.3f} kg",
                )
            )

    def _concentration_loop(self, now: float, actions: list[Action]) -> None:
        cfg = self.cfg
        api = cfg.api_feeder
        bridging = self.conditions.get("bridging", _Condition())
        blocked = (
            self.nir_suspect
            or self.estimate.get("nir") is None
            or bridging.active
            or now - bridging.cleared_at < 300.0  # let a collapsed bridge settle first
            or self._v(f"{api}.drive_command", 0.0) >= 95.0  # a saturated drive cannot follow
            or self._v(f"{api}.mode", 0) != 0
        )
        target = 100.0 * cfg.label_claim_mg / cfg.target_weight_mg
        # Trim only a steady offset; a large excursion is a transient for diversion to handle.
        if blocked or self.nir_slow.value is None or abs(self.nir_slow.value / target - 1) > 0.15:
            return
        api_sp = self._v(f"{api}.mass_flow_sp")
        others = {f: self._v(f"{f}.mass_flow_sp") for f in cfg.other_feeders}
        total = api_sp + sum(others.values())
        new = laws.concentration_trim(
            api_sp,
            total,
            self.nir_slow.value,
            target,
            cfg.concentration_gain,
            cfg.concentration_deadband_pct,
        )
        if new is None:
            return
        # The trim has a bounded authority around the recipe (or around the load-cell
        # compensation): a probe that drifts without being caught cannot walk the blend out of
        # spec on its own.
        recipe = total * target / 100.0 * self.api_compensation
        authority = cfg.concentration_authority
        new = laws.clamp(new, recipe * (1 - authority), recipe * (1 + authority))
        if abs(new - api_sp) < 0.001:
            return
        reason = (
            f"blend at {self.nir_slow.value:.2f} % w/w by NIR, target {target:.2f}: "
            f"API feeder {api_sp:.3f} -> {new:.3f} kg/h at a constant {total:.2f} kg/h"
        )
        self._set_api_share(new, reason, actions)

    def _set_api_share(self, new_api: float, reason: str, actions: list[Action]) -> None:
        """Set the API feeder, taking the difference from the other feeders: total constant."""
        cfg = self.cfg
        others = {f: self._v(f"{f}.mass_flow_sp") for f in cfg.other_feeders}
        total = self._v(f"{cfg.api_feeder}.mass_flow_sp") + sum(others.values())
        new_api = laws.clamp(new_api, 0.0, total)
        actions.append(
            Action("setpoint", f"{cfg.api_feeder}.mass_flow_sp", round(new_api, 4), reason)
        )
        rest = sum(others.values())
        for feeder, sp in others.items():
            share = sp / rest if rest else 1.0 / len(others)
            value = round((total - new_api) * share, 4)
            actions.append(Action("setpoint", f"{feeder}.mass_flow_sp", value, reason))

    def _load_cell_response(
        self, was: bool, now_active: bool, change: float, actions: list[Action]
    ) -> None:
        """A drifting load cell makes the feeder deliver 1/(1+change) of what it reports: set
        the recipe's API share times (1+change) at once, and the recipe's share again when the
        cell reads true (a re-tare), instead of waiting for the slow NIR loop both ways."""
        if not self.enabled:
            return
        if now_active and was:
            # The drift ramps up after it is first seen: follow it in steps of a percent.
            factor = laws.clamp(1.0 + change, 0.85, 1.15)
            if abs(factor - self.api_compensation) < 0.01:
                return
        elif now_active == was:
            return
        cfg = self.cfg
        feeders = (cfg.api_feeder, *cfg.other_feeders)
        total = sum(self._v(f"{f}.mass_flow_sp", 0.0) for f in feeders)
        recipe = total * cfg.label_claim_mg / cfg.target_weight_mg
        if now_active:
            factor = laws.clamp(1.0 + change, 0.85, 1.15)
            self.api_compensation = factor
            reason = (
                f"API load cell reads {change:+.1%}: setting the recipe's "
                f"{recipe:.3f} kg/h {factor - 1:+.1%} to keep the true flow"
            )
            self._set_api_share(recipe * factor, reason, actions)
        else:
            self.api_compensation = 1.0
            self._set_api_share(
                recipe,
                f"API load cell reads true again: back to the recipe's {recipe:.3f} kg/h",
                actions,
            )

    # Detection ---------------------------------------------------------------------------------
    def _detect(self, now: float, actions: list[Action]) -> None:
        cfg = self.cfg
        api = cfg.api_feeder
        settled = self.producing_since is not None and now - self.producing_since > 300.0

        drive, sp, pv = (
            self._v(f"{api}.drive_command"),
            self._v(f"{api}.mass_flow_sp"),
            self._v(f"{api}.mass_flow_pv"),
        )
        bridging = drive >= 99.0 and pv < 0.7 * sp
        if self._condition(
            now,
            "bridging",
            bridging,
            5.0,
            lambda: (
                f"API feeder at full drive delivers {pv:.2f} of {sp:.2f} kg/h: "
                "bridging; diverting the lean blend"
            ),
        ):
            raised = self.conditions["bridging"].raised_at
            if bridging and now - raised > cfg.bridging_stop_s and self.enabled:
                actions.append(
                    Action(
                        "line",
                        "stop",
                        None,
                        f"API feeder bridged for {now - raised:.0f} s: stopping",
                    )
                )

        bridge = self.conditions.get("bridging", _Condition())
        # Feeder statistics mean something only away from refills, bridges and a saturated drive.
        steady = not bridge.active and now - bridge.cleared_at > 600.0 and drive < 95.0
        quiet = steady and now - self.last_refill > 300.0
        # Reconciliation: NIR against the feeders' ratio, and the feeder's learnt feed factor.
        feed_factor = self._v(f"{api}.feed_factor")
        base = self.feed_factor_base.value
        gap = self.disagreement.value or 0.0
        gravimetric = self._v(f"{api}.mode", 0) == 0
        if math.isfinite(feed_factor) and gravimetric:
            # A drift is the learnt feed factor moving away from its own long-run average:
            # a fast average against a slow one, so a past drift does not stick for hours.
            self.feed_factor_fast.update(feed_factor, self.dt)
            if not self.conditions.get("load_cell_drift", _Condition()).active:
                # While a load cell drifts, the feed factor it seems to have is measured
                # against the one before the drift: the compensation and the fail-safe's
                # explanation of the NIR's gap both rest on it.
                self.feed_factor_base.update(feed_factor, self.dt)
        fast = self.feed_factor_fast.value
        change = fast / base - 1.0 if base and fast else 0.0
        c_feeders = self.estimate.get("feeders") or 0.0
        expected_gap = -c_feeders * change
        consistent = abs(gap) > cfg.reconcile_limit_pct and abs(gap - expected_gap) < 0.5 * abs(gap)
        # A probe that disagrees with healthy feeders, with no feeder signal to explain it, is
        # the probe: caught here even when its offset crept in instead of stepping.
        probe_suspect = (
            settled
            and quiet
            and abs(gap) > cfg.reconcile_limit_pct
            and not consistent
            and abs(change) < 0.02
        )
        was_disagreeing = self.conditions.get("nir_disagrees", _Condition()).active
        disagreeing = self._condition(
            now,
            "nir_disagrees",
            probe_suspect,
            60.0,
            lambda: (
                f"NIR disagrees with the feeders by {gap:+.2f} % w/w and no feeder "
                "explains it: probe fault, not trimming feeders on it"
            ),
        )
        if disagreeing and not was_disagreeing and not self.nir_suspect:
            self.nir_suspect = True
            self.probe_offset = gap
            self._alarm(now, "nir_bias", True, "NIR reconciled against the feeders: biased")
        was_drifting = self.conditions.get("load_cell_drift", _Condition()).active
        load_cell = self._condition(
            now,
            "load_cell_drift",
            settled and consistent and abs(change) > 0.02,
            30.0,
            lambda: (
                f"API feeder reads {change:+.1%} more per % drive and NIR disagrees by "
                f"{gap:+.2f} % w/w: its load cell is drifting; trusting NIR"
            ),
        )
        self._load_cell_response(was_drifting, load_cell, change, actions)
        self.load_cell_gap = expected_gap if load_cell else None
        # The API feeder's learnt feed factor is disturbed by its own refills (densified
        # powder), not by the other feeders': theirs come every few minutes and would hide a
        # drift for most of the time.
        api_quiet = steady and now - self.refilled_at.get(api, -math.inf) > 300.0
        self._condition(
            now,
            "feed_factor_drift",
            settled and api_quiet and abs(change) > 0.05 and abs(gap) < cfg.reconcile_limit_pct,
            120.0,
            lambda: (
                f"API feeder needs {-change:+.1%} drive for its flow: feed factor "
                "drifting (bulk density); the feeder compensates"
            ),
        )

        bad = self.nir.bad_fraction
        dropping = bad > (0.05 if self.conditions.get("nir_dropout", _Condition()).active else 0.15)
        self._condition(
            now,
            "nir_dropout",
            dropping,
            10.0,
            lambda: f"{bad:.0%} of NIR spectra lost or spiky: using the robust estimate",
        )

        for feeder in (api, *cfg.other_feeders):
            flows = self.flows.get(feeder)
            if not flows or len(flows) < 300:
                continue
            baseline = self.flow_rsd_base.get(feeder)
            if baseline is None:
                baseline = self.flow_rsd_base[feeder] = Ewma(1200.0)
            name = f"feeder_noise:{feeder}"
            if not quiet:
                # The RSD counts only between refills: no need to work it out.
                self._condition(now, name, False, 20.0, "")
                continue
            rsd = flows.sd
            noisy = baseline.value is not None and settled and rsd > 1.7 * baseline.value
            if (
                not self._condition(
                    now,
                    name,
                    noisy,
                    20.0,
                    partial(_noise_message, feeder, rsd, baseline.value),
                )
                and quiet
            ):
                baseline.update(rsd, self.dt)

        speed_sp, speed_pv = self._v(f"{cfg.blender}.speed_sp"), self._v(f"{cfg.blender}.speed_pv")
        self._condition(
            now,
            "impeller_slowdown",
            speed_pv < 0.95 * speed_sp,
            10.0,
            lambda: (
                f"impeller at {speed_pv:.0f} rpm for a set {speed_sp:.0f} rpm: "
                "residence time rising; RTD model follows the measured hold-up"
            ),
        )

        turret_sp, turret_pv = (
            self._v(f"{cfg.press}.turret_speed_sp"),
            self._v(f"{cfg.press}.turret_speed_pv"),
        )
        self._condition(
            now,
            "turret_speed_step",
            abs(turret_pv - turret_sp) > 0.3,
            10.0,
            lambda: (
                f"turret at {turret_pv:.2f} rpm for a set {turret_sp:.2f} rpm: "
                "rebalancing the press rate on the hopper level"
            ),
        )

        depth_sp, depth_pv = (
            self._v(f"{cfg.press}.fill_depth_sp"),
            self._v(f"{cfg.press}.fill_depth_pv"),
        )
        sticking = abs(depth_sp - depth_pv) > 0.02
        if self._condition(
            now,
            "fill_depth_stiction",
            sticking,
            30.0,
            lambda: (
                f"fill depth at {depth_pv:.3f} mm for a set {depth_sp:.3f} mm: actuator "
                "sticking; widening the weight loop's deadband to stop it hunting"
            ),
        ):
            self.weight_deadband = max(self.weight_deadband, 6.0)
        else:
            self.weight_deadband = cfg.weight_deadband_mg

        if self.weights and math.isfinite(depth_pv) and depth_pv > 0:
            weight = self.weight_mean
            ratio = weight / depth_pv
            base_ratio = self.weight_per_depth_base.value
            shift = ratio / base_ratio - 1.0 if base_ratio else 0.0
            density = settled and quiet and not self.planner.windows and abs(shift) > 0.02
            if not self._condition(
                now,
                "lot_density_change",
                density,
                30.0,
                lambda: (
                    f"{shift:+.1%} tablet weight per mm of fill depth: the blend's "
                    "bulk density changed; the weight loop trims fill depth"
                ),
            ):
                self.weight_per_depth_base.update(ratio, self.dt)

        thickness, gap_sp = self._v(f"{cfg.press}.thickness"), self._v(f"{cfg.press}.main_gap_sp")
        if math.isfinite(thickness) and gap_sp > 0:
            base_ratio = self.thickness_per_gap_base.value
            wear_mm = thickness - (base_ratio or thickness / gap_sp) * gap_sp
            if not self._condition(
                now,
                "punch_wear",
                settled and wear_mm > 0.02,
                60.0,
                lambda: (
                    f"tablets {wear_mm:.3f} mm thicker than the punch gap explains: "
                    "punch wear; maintenance due, hardness loop compensating"
                ),
            ):
                self.thickness_per_gap_base.update(thickness / gap_sp, self.dt)

        if now - self.last_refill < 240.0 and self.planner.windows:
            self._condition(
                now,
                "refill_disturbance",
                True,
                0.0,
                "blend disturbed by a feeder refill: diverting the predicted window",
            )
        elif not self.planner.windows:
            self._condition(
                now, "refill_disturbance", False, 60.0, "", "refill disturbance has passed"
            )
