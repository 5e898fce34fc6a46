"""Reject gate after the press: decides the fate of every tablet."""

from __future__ import annotations

from core.layout import ModuleSpec
from core.parameters import DiverterParams
from twin.context import Context, ProcessGenerator

ACCEPT, REJECT = 0, 1  # position_sp states
FB_ACCEPT, FB_MOVING, FB_REJECT = 0, 1, 2  # position_pv states


class Diverter:
    def __init__(self, ctx: Context, spec: ModuleSpec) -> None:
        p: DiverterParams = spec.params
        self.ctx, self.id, self.p = ctx, spec.id, p
        self.setpoint = ACCEPT
        self.forced_reject = True  # the line holds the gate at reject until production starts
        self.position = FB_REJECT
        self.stuck = False
        self._moving = False
        self.accepted = 0.0
        self.diverted = 0.0
        self.diverted_mass = 0.0
        self.oos_mass = 0.0
        self.oos_accepted = 0.0  # released: a quarantine takes its tablets back out
        self.quarantined = 0.0
        self.oos_quarantined = 0.0
        k = spec.id
        self._k = (
            f"{k}.position_pv",
            f"{k}.accepted_count",
            f"{k}.diverted_count",
            f"{k}.diverted_mass",
            f"{k}.true_oos_mass",
            f"{k}.true_oos_accepted",
            f"{k}.true_tablets_quarantined",
            f"{k}.true_oos_quarantined",
        )
        ctx.store.values[f"{k}.position_sp"] = self.setpoint
        ctx.store.values[self._k[0]] = self.position

    @property
    def target(self) -> int:
        return FB_REJECT if self.forced_reject or self.setpoint == REJECT else FB_ACCEPT

    def start(self) -> None:
        """The gate moves only when asked to: see `follow`."""

    def follow(self) -> None:
        """Move toward the target position, unless stuck or already on the way there."""
        if not self.stuck and not self._moving and self.position != self.target:
            self._moving = True
            self.ctx.env.process(self._actuate())

    def _actuate(self) -> ProcessGenerator:
        env = self.ctx.env
        while self.position != self.target and not self.stuck:
            self.position = FB_MOVING
            self._publish(env.now)
            yield env.timeout(self.p.actuation_s)
            self.position = self.target
            self._publish(env.now)
        self._moving = False

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
        self._publish(self.ctx.env.now)
        return diverted

    def quarantine(self, tablets: float, oos_tablets: float) -> None:
        """Tablets it sent to accept were held back in genealogy: they are not released."""
        self.quarantined += tablets
        self.oos_quarantined += oos_tablets
        self.oos_accepted = max(self.oos_accepted - oos_tablets, 0.0)
        self._publish(self.ctx.env.now)

    def _publish(self, now: float) -> None:
        values, k = self.ctx.store.values, self._k
        values[k[0]] = self.position
        values[k[1]] = int(self.accepted)
        values[k[2]] = int(self.diverted)
        values[k[3]] = self.diverted_mass
        values[k[4]] = self.oos_mass
        values[k[5]] = round(self.oos_accepted)
        values[k[6]] = round(self.quarantined)
        values[k[7]] = round(self.oos_quarantined)
        self.ctx.store.stamps[self.id] = now

    def apply_fault(self, kind: str, magnitude: float) -> None:
        if kind == "diverter_stuck":
            self.stuck = True

    def remove_fault(self, kind: str) -> None:
        if kind == "diverter_stuck":
            self.stuck = False
            self.follow()

    def write(self, name: str, value: float | int) -> None:
        if name == "position_sp":
            self.setpoint = int(value)
        self.ctx.store.values[f"{self.id}.{name}"] = value
        self.follow()

    def hold_reject(self, hold: bool) -> None:
        """The line holds the gate at reject outside production, and releases it."""
        self.forced_reject = hold
        self.follow()

    def warm_start(self) -> None:
        self.forced_reject = False
        self.position = FB_ACCEPT if self.setpoint == ACCEPT else FB_REJECT
        self._publish(self.ctx.env.now)
