"""The production state machine of the line.

idle --start--> starting --(start-up material diverted)--> producing <--> diverting
producing/diverting/starting --stop--> stopping --(press runs dry)--> stopped --start--> ...
any running state --trip--> faulted --reset--> stopped
"""

from __future__ import annotations

from core.layout import ModuleSpec
from core.parameters import LineParams
from core.tags import LINE_STATES
from twin.context import Context
from twin.diverter import FB_ACCEPT, Diverter
from twin.feed_frame import FeedFrame
from twin.press import Press

IDLE, STARTING, PRODUCING, DIVERTING, STOPPING, STOPPED, FAULTED = range(len(LINE_STATES))
RUNNING = frozenset({STARTING, PRODUCING, DIVERTING, STOPPING})
FEEDING = frozenset({STARTING, PRODUCING, DIVERTING})

#: Which line commands each state accepts.
ALLOWED = {
    "start": frozenset({IDLE, STOPPED}),
    "stop": FEEDING,
    "abort": RUNNING,
    "reset": frozenset({FAULTED}),
}


class Line:
    def __init__(self, ctx: Context, spec: ModuleSpec) -> None:
        p: LineParams = spec.params
        self.ctx, self.id, self.p = ctx, spec.id, p
        self.state = IDLE
        self.since = 0.0
        self.changes = 0
        self.active_faults = 0
        self.presses: list[Press] = []
        self.diverters: list[Diverter] = []
        self.feed_frames: list[FeedFrame] = []
        self._k = (f"{spec.id}.state", f"{spec.id}.active_faults", f"{spec.id}.state_changes")
        self._publish(0.0)

    @property
    def feeding(self) -> bool:
        return self.state in FEEDING

    @property
    def blending(self) -> bool:
        return self.state in RUNNING

    @property
    def pressing(self) -> bool:
        return self.state in RUNNING

    @property
    def starting(self) -> bool:
        return self.state == STARTING

    @property
    def faulted(self) -> bool:
        return self.state == FAULTED

    @property
    def state_name(self) -> str:
        return LINE_STATES[self.state]

    def change(self, state: int, why: str) -> None:
        if state == self.state:
            return
        self.ctx.event(self.id, "state", f"{self.state_name} -> {LINE_STATES[state]}: {why}")
        self.state, self.since = state, self.ctx.env.now
        self.changes += 1
        hold_reject = state not in (PRODUCING, DIVERTING)
        for diverter in self.diverters:
            diverter.hold_reject(hold_reject)
        if state == STARTING:
            for press in self.presses:
                press.primed = False
        self._publish(self.ctx.env.now)

    def command(self, action: str) -> str | None:
        """Carry out a line command; return why not when the state does not allow it.

        `stop` runs the line dry with its output diverted; `abort` is the emergency stop: every
        drive halts at once, material stays where it is, and the line needs a reset.
        """
        if self.state not in ALLOWED[action]:
            return f"cannot {action} the line while it is {self.state_name}"
        target = {"start": STARTING, "stop": STOPPING, "abort": FAULTED, "reset": STOPPED}[action]
        self.change(target, f"{action} command")
        return None

    def step(self, now: float, dt: float) -> None:
        state, p = self.state, self.p
        if state == STARTING and now - self.since >= p.startup_divert_s:
            self.change(PRODUCING, "start-up material diverted")
        elif state in (PRODUCING, DIVERTING):
            diverting = False  # (a loop, not any() of a generator: 2,200 instructions a step)
            for diverter in self.diverters:
                if diverter.position != FB_ACCEPT:
                    diverting = True
                    break
            if (DIVERTING if diverting else PRODUCING) != state:  # (every step: checked here)
                self.change(
                    DIVERTING if diverting else PRODUCING,
                    "diverter at reject" if diverting else "diverter at accept",
                )
        if self.state in RUNNING:
            for frame in self.feed_frames:
                if frame.level > frame.p.max_level_kg:
                    self.change(FAULTED, f"{frame.id} overflow: {frame.level:.2f} kg")
            if self.state != STOPPING:  # a press running dry is how a stop ends
                for press in self.presses:
                    if press.starved_s >= press.feed_frame.p.starve_trip_s:
                        self.change(FAULTED, f"{press.id} starved for {press.starved_s:.0f} s")
        if self.state == STOPPING:
            dry = all(press.starved_s >= press.feed_frame.p.starve_trip_s for press in self.presses)
            if dry or now - self.since >= p.stop_timeout_s:
                self.change(STOPPED, "line empty" if dry else "stop timeout")
        self._publish(now)

    def _publish(self, now: float) -> None:
        values, k = self.ctx.store.values, self._k
        values[k[0]] = self.state
        values[k[1]] = self.active_faults
        values[k[2]] = self.changes
        self.ctx.store.stamps[self.id] = now

    def apply_fault(self, kind: str, magnitude: float) -> None:
        """The line itself has no faults in the catalogue."""

    def remove_fault(self, kind: str) -> None:
        """The line itself has no faults in the catalogue."""

    def write(self, name: str, value: float | int) -> None:
        raise KeyError(name)

    def warm_start(self) -> None:
        self.state, self.since = PRODUCING, self.ctx.env.now
        for diverter in self.diverters:
            diverter.forced_reject = False
        self._publish(self.ctx.env.now)
