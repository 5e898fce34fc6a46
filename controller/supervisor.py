"""The supervisory controller: telemetry in, setpoint commands and alarms out, each with a reason.

It sees what a real plant shows (tags with quality and source time), never the twin's ground
truth, and acts only by asking for setpoint changes and line commands. Call `observe` for each
sample as it arrives (or `observe_all` for a snapshot) and `step(now)` once a second of plant
time. The step only orchestrates; each job has its own unit:

1. `Telemetry` keeps the newest readings; the step holds everything when they are stale (fault
   14) and does nothing but watch the gate while the line is not producing;
2. `Blend` estimates the blend leaving the blender twice, a robust NIR median and the feeders'
   API ratio through the blender's RTD, and reconciles the two (a probe fault or a process
   fault; the fail-safe when nothing explains their gap);
3. `Gate` predicts each tablet's content when the powder seen now reaches the dies (the feed
   frame is plug flow: delay = level over draw), diverts exactly those windows plus a margin,
   and stops the line when the gate sticks or the line has diverted too long;
4. `Loops`: API ratio from NIR at constant total (L2), weight by fill depth, press rate by
   turret speed holding the hopper level, hardness by punch gap, impeller speed (L1);
5. `Detectors`: each fault of the catalogue from its signature, with the response
   `shared/domain.md` asks for. Every threshold is in `ControllerConfig`, with its unit and why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from controller.actions import Action
from controller.blend import Blend
from controller.conditions import Alarm, Conditions
from controller.config import ControllerConfig
from controller.detectors import Detectors
from controller.gate import Gate
from controller.loops import Loops
from controller.telemetry import Reading, Shared, Telemetry

__all__ = ["Action", "Alarm", "Supervisor"]

PRODUCING_STATES = (2, 3)  # line.state: producing, diverting
STARTING = 1


class Supervisor:
    def __init__(self, config: ControllerConfig | None = None, *, enabled: bool = True) -> None:
        self.cfg = cfg = config or ControllerConfig()
        self.enabled = enabled
        self.tel = Telemetry()
        self.conds = Conditions()
        self.shared = Shared()  # readings several units use, read once a decision (`step`)
        self.blend = Blend(cfg, self.tel, self.conds, self.shared)
        self.gate = Gate(self)
        self.loops = Loops(self)
        self.detectors = Detectors(self)
        self._nir_tag = f"{cfg.nir}.api_pct"
        self._state_tag = f"{cfg.line}.state"
        self._stale = self.conds.watch("stale_telemetry")
        p, api = cfg.press, cfg.api_feeder
        self._shared_tags = (
            f"{p}.fill_depth_sp",
            f"{p}.fill_depth_pv",
            f"{api}.feed_factor",
            f"{api}.mode",
            f"{api}.mass_flow_sp",
        )
        self.last_step = -math.inf
        self.dt = 1.0
        self.interval_s = 1.0  # plant s between decisions, as the telemetry comes
        self.producing_since: float | None = None
        self.command_latency_s = 0.0  # plant seconds from a command to its effect (see note_...)
        self.effect_latency_s = 0.0  # plant s from a decision to its effect, as telemetry shows
        # How far the telemetry decided on is behind the plant, plant s, as the adapter
        # estimates it (a stalled controller works through a backlog): 0 in lockstep.
        self.behind_s = 0.0
        self._sent: dict[str, tuple[float, float]] = {}  # setpoint -> (value, sent at)

    # Input -------------------------------------------------------------------------------------
    @property
    def tags(self) -> Mapping[str, Reading]:
        """The newest reading of every tag observed."""
        return self.tel.tags

    @property
    def newest(self) -> float:
        """The newest source time observed."""
        return self.tel.newest

    def observe(self, tag: str, value: Any, quality: str, source_time: float) -> None:
        self.tel.observe(tag, value, quality, source_time)
        if tag == self._nir_tag:
            self.blend.observe_nir(float(value), quality == "good", source_time)

    def observe_all(
        self, readings: Mapping[str, tuple[Any, str, float]], newest: float | None = None
    ) -> None:
        """`observe` for a whole snapshot at once: tag -> (value, quality, source time);
        `newest`, its newest source time, when the sender knows it without a look at each."""
        self.tel.observe_all(readings, newest)
        self._observe_probe(readings)

    def observe_plant(
        self, show: Callable[[dict[str, tuple[Any, str, float]]], None], newest: float
    ) -> None:
        """`observe_all` for an in-process plant's whole snapshot, which `show` writes straight
        into the telemetry's table (no dict of its own in between: the in-process closed loop's
        hot path); `newest`, its newest source time. The snapshot has every tag the plant
        shows, the probe's included."""
        self.tel.observe_shown(show, newest)
        self._observe_probe(self.tel.raw)

    def _observe_probe(self, readings: Mapping[str, tuple[Any, str, float]]) -> None:
        """Give the blend's NIR estimator the probe's reading in a snapshot just taken, if it
        has one (`observe_all`, `observe_plant`)."""
        nir = readings.get(self._nir_tag)
        if nir is not None:
            value, quality, source_time = nir
            self.blend.observe_nir(float(value), quality == "good", source_time)

    # Timing ------------------------------------------------------------------------------------
    def note_command_latency(self, plant_s: float) -> None:
        """A command's round trip, in plant seconds: slowly forgotten, quickly raised. One
        longer than `effect_timeout_s` times no link (`_is_latency`)."""
        if self._is_latency(plant_s):
            self.command_latency_s = max(plant_s, self.cfg.latency_forget * self.command_latency_s)
            self._set_gate_lead()

    def note_effect_latency(self, plant_s: float) -> None:
        """A command's effect seen in telemetry this long after the decision (less one
        telemetry interval): slowly forgotten, quickly raised; as above."""
        if self._is_latency(plant_s):
            self.effect_latency_s = max(plant_s, self.cfg.latency_forget * self.effect_latency_s)
            self._set_gate_lead()

    def _is_latency(self, plant_s: float) -> bool:
        """Whether a measured delay can be the link's: not beyond `effect_timeout_s`, past
        which a setpoint not yet shown is taken for refused, not late. Such a delay is a
        process stopped or an upstream gap (a gate command shown only when the setpoint next
        changed, a reply timed by the wall clock while no telemetry came); kept, it set the
        reaction time for the next hour of plant time (CI run of 01d7e25: "tablet weight
        heading for 485 mg within 362 s", a reject on a trend projected six minutes ahead)."""
        return plant_s <= self.cfg.effect_timeout_s

    @property
    def reaction_s(self) -> float:
        """Plant seconds from a command to seeing its effect in telemetry: the round trip there
        and back, and the telemetry's own interval (an accelerated plant, seen through OPC UA,
        reports every few plant seconds rather than every second)."""
        round_trip = max(2 * self.command_latency_s, self.effect_latency_s + self.interval_s)
        return round_trip + self.interval_s

    def _set_gate_lead(self) -> None:
        # Between two decisions nothing can be commanded: a window that opens before the next
        # one must be served by this one. And each decision judges the material of the whole
        # interval since the last one, not only its own instant: the margin grows by that.
        # (Every decision: max by comparison, as in `step`.)
        planner = self.gate.planner
        command, effect = self.command_latency_s, self.effect_latency_s
        latency = effect if effect > command else command  # max(command, effect)
        planner.lead_s = self.cfg.gate_lead_s + latency + self.interval_s
        extra = self.interval_s - 1.0
        planner.margin_s = self.cfg.margin_s + (0.0 if extra < 0.0 else extra)  # max(extra, 0.0)

    def command_failed(self, action: Action, code: str | None) -> None:
        """The plant refused `action` (`code`, its reply's, says why) or never answered it
        (None). The gate's commands and quarantines are acted on (`Gate.command_failed`); a
        loop's setpoint is sent again by its loop while it is still wanted."""
        self.gate.command_failed(action, code)

    def take_alarms(self) -> list[Alarm]:
        return self.conds.take()

    # The step ----------------------------------------------------------------------------------
    def step(self, now: float) -> list[Action]:
        """Decide what to do at plant time `now`; returns the commands to send."""
        # Min and max of two, in what runs every decision, by comparison: `max(a, b)` is
        # `b if b > a else a` (and min alike), the same value, NaN and signed zeros included, for
        # a tenth of Python 3.11's builtins, which parse their keywords on every call (measured:
        # the closed loop's instructions a plant second 758,400 -> 738,100).
        cfg = self.cfg
        first = self.last_step == -math.inf
        if first:
            dt = 1.0
        else:
            gap = now - self.last_step
            gap = 0.0 if gap < 0.0 else gap  # max(gap, 0.0)
            dt = cfg.max_dt_s if cfg.max_dt_s < gap else gap  # min(gap, cfg.max_dt_s)
        self.last_step = now
        self.dt = dt  # plant s since the last decision: averages weigh by time, not by calls
        forgotten = cfg.interval_forget * self.interval_s
        self.interval_s = forgotten if forgotten > dt else dt  # max(dt, forgotten)
        # Half of a dropout's spectra leave no reading at all, only a gap in the probe's source
        # times (random campaign 21: 25 % lost showed as 14 % flagged); a gap means lost
        # spectra only when telemetry comes well inside the probe's period.
        self.blend.every_spectrum = self.interval_s <= cfg.nir_period_s / 2
        self._set_gate_lead()
        stale, cond = now - self.tel.newest > cfg.stale_telemetry_s, self._stale
        if cond.moved_by(stale) and self.conds.update(  # (`watch`)
            now,
            "stale_telemetry",
            stale,
            0.0,
            "telemetry is stale: holding the last good setpoints",
            "telemetry is flowing again",
        ):
            return []
        v = self.tel.v
        state = v(self._state_tag, -1)
        self.blend.starting = state == STARTING
        if state == STARTING or state in PRODUCING_STATES:
            # Read once here, not by each unit that uses them (measured: the closed loop's
            # instructions a plant second 706,600 -> 699,600)
            shared, tags = self.shared, self._shared_tags
            shared.depth_sp, shared.depth_pv = v(tags[0]), v(tags[1])
            shared.feed_factor, shared.gravimetric = v(tags[2]), v(tags[3], 0) == 0
            shared.api_sp = v(tags[4], 0.0)
        if state not in PRODUCING_STATES:
            self.producing_since = None
            quarantines = self.gate.stand_by(now, starting=state == STARTING)
            if state == STARTING:
                self.blend.started_at = now
                self.blend.update(now, dt)
                self.gate.judge_startup(now)
            held = self.gate.check_held_gate(now, state)
            reconciliation = self.detectors.reconciliation
            if reconciliation.relearning and state != STARTING:
                reconciliation.end_relearning(held)
            if state == STARTING and self.enabled and not held:
                self.loops.run_start_up(now, held)
            return quarantines + held if quarantines else held
        if self.producing_since is None:
            self.producing_since = now
            self.gate.begin_production(now)
        actions: list[Action] = []
        self.blend.update(now, dt)
        self.blend.check_agreement(now, dt)
        self.gate.divert(now, actions)
        if self.enabled and not (actions and any(a.kind == "line" for a in actions)):
            self.loops.run(now, actions)
        self.detectors.run(now, dt, actions)
        if not self.enabled:
            return []
        self._time_commands(now, actions)
        return actions

    def _time_commands(self, now: float, actions: list[Action]) -> None:
        """Time each numeric setpoint command from the decision to telemetry showing it."""
        sent, raw = self._sent, self.tel.raw
        for tag in [t for t in sent if t in raw]:
            value, at = sent[tag]
            shown, _, when = raw[tag]
            if when > at and isinstance(shown, int | float) and abs(shown - value) < 1e-6:
                del sent[tag]
                self.note_effect_latency(when - at - self.interval_s)
            elif now - at > self.cfg.effect_timeout_s:
                del sent[tag]  # refused, or overtaken by another change: not a measure
        for action in actions:
            if action.kind == "setpoint" and isinstance(action.value, int | float):
                # Sent when the plant was `behind_s` further on (see `Gate._gate`).
                sent[action.target] = (float(action.value), now + self.behind_s)
