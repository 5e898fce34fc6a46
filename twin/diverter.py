"""Reject gate after the press: decides the fate of every tablet."""

from __future__ import annotations

from twin.context import Context
from twin.layout import ModuleSpec
from twin.parameters import DiverterParams

ACCEPT, REJECT = 0, 1  # position_sp states
FB_ACCEPT, FB_MOVING, FB_REJECT = 0, 1, 2  # position_pv states


class Diverter:
    def __init__(self, ctx: Context, spec: ModuleSpec) -> None:
        p: DiverterParams = spec.params
        self.ctx, self.id, self.p = ctx, spec.id, p
        self.setpoint = ACCEPT
        self.forced_reject = True  # the line holds the gate at reject until production starts
        self.position = FB_REJECT
        self.moving_to = FB_REJECT
        self.arrives = 0.0
        self.stuck = False
        self.accepted = 0.0
        self.diverted = 0.0
        self.diverted_mass = 0.0
        self.oos_mass = 0.0
        self.oos_accepted = 0.0
        k = spec.id
        self._k = (f"{k}.position_pv", f"{k}.accepted_count", f"{k}.diverted_count",
                   f"{k}.diverted_mass", f"{k}.true_oos_mass", f"{k}.true_oos_accepted")
        ctx.store.values[f"{k}.position_sp"] = self.setpoint
        ctx.store.values[self._k[0]] = self.position

    @property
    def target(self) -> int:
        return FB_REJECT if self.forced_reject or self.setpoint == REJECT else FB_ACCEPT

    def start(self) -> None:
        self.ctx.env.process(self.run())

    def run(self):  # type: ignore[no-untyped-def]
        env, dt = self.ctx.env, self.ctx.dt
        while True:
            yield env.timeout(dt)
            self.step(env.now)

    def step(self, now: float) -> None:
        if not self.stuck:
            target = self.target
            if self.position == FB_MOVING:
                if now >= self.arrives:
                    self.position = self.moving_to
            elif self.position != target:
                self.position, self.moving_to = FB_MOVING, target
                self.arrives = now + self.p.actuation_s
        self._publish(now)

    def receive(self, tablets: float, mass: float, oos: bool) -> bool:
        """Route a slice of tablets; returns True when it went to reject.

        A gate in motion counts as reject: tablets never reach accept past a half-open gate.
        """
        diverted = self.position != FB_ACCEPT
        if diverted:
            self.diverted += tablets
            self.diverted_mass += mass
        else:
            self.accepted += tablets
        if oos:
            self.oos_mass += mass
            if not diverted:
                self.oos_accepted += tablets
        return diverted

    def _publish(self, now: float) -> None:
        values, k = self.ctx.store.values, self._k
        values[k[0]] = self.position
        values[k[1]] = int(self.accepted)
        values[k[2]] = int(self.diverted)
        values[k[3]] = self.diverted_mass
        values[k[4]] = self.oos_mass
        values[k[5]] = round(self.oos_accepted)
        self.ctx.store.stamps[self.id] = now

    def apply_fault(self, kind: str, magnitude: float) -> None:
        if kind == "diverter_stuck":
            self.stuck = True

    def remove_fault(self, kind: str) -> None:
        if kind == "diverter_stuck":
            self.stuck = False

    def write(self, name: str, value: float | int) -> None:
        if name == "position_sp":
            self.setpoint = int(value)
        self.ctx.store.values[f"{self.id}.{name}"] = value

    def warm_start(self) -> None:
        self.forced_reject = False
        self.position = self.moving_to = FB_ACCEPT if self.setpoint == ACCEPT else FB_REJECT
