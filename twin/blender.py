"""Continuous blender: n tanks in series, each emptying through a weir-like law.

Tank i holds m_i and passes `flow_ref * (m_i / m_ref)**(1/flow_exponent)` to the next, with
`m_ref = holdup_ref / n * (speed_ref / speed)**speed_exponent`. At steady throughput F each tank
holds `m_ref * (F / flow_ref)**flow_exponent`, so hold-up rises with throughput and falls with
impeller speed, and the residence time distribution is the tanks-in-series one with mean
hold-up / F (Vanarase & Muzzio 2011; `core.rtd` has the analytic form).
"""

from __future__ import annotations

import math

from core.layout import ModuleSpec
from core.parameters import BlenderParams
from core.rtd import steady_holdup_kg
from twin.context import Context
from twin.feed_frame import FeedFrame

MIN_SPEED_RPM = 1.0  # below this the impeller is stopped and nothing leaves


class Blender:
    def __init__(self, ctx: Context, spec: ModuleSpec) -> None:
        p: BlenderParams = spec.params
        self.ctx, self.id, self.p = ctx, spec.id, p
        self.line = ctx.line  # created before every other module
        self.inlet = ctx.components.empty()
        self._empty = ctx.components.empty()
        self.tanks = [ctx.components.empty() for _ in range(p.tanks)]
        self.tank_mass = [0.0] * p.tanks
        self.outlets: list[FeedFrame] = []
        self.setpoint = p.speed_sp_rpm
        self.speed = 0.0
        self.speed_loss = 0.0
        self.out_flow_kgh = 0.0
        self.outlet_api_pct = 0.0
        self._api = ctx.components.api
        self._speed_alpha = 1.0 - math.exp(-ctx.dt / p.speed_time_constant_s)
        self._inv_exp = 1.0 / p.flow_exponent
        # Worked out once: a tank's reference hold-up and capacity, and the hold-up at the
        # impeller's speed, which changes only while the drive moves.
        self._holdup_per_tank = p.holdup_ref_kg / p.tanks
        self._flow_ref_kgs = p.flow_ref_kgh / 3600.0
        self._m_ref_speed = math.nan
        self._m_ref = 0.0
        k = spec.id
        self._k = (
            f"{k}.speed_pv",
            f"{k}.holdup_mass",
            f"{k}.throughput",
            f"{k}.residence_time",
            f"{k}.motor_current",
            f"{k}.true_api_pct",
        )
        ctx.store.values[f"{k}.speed_sp"] = self.setpoint

    @property
    def holdup(self) -> float:
        return sum(self.tank_mass, 0.0)

    def step(self, now: float, dt: float) -> None:
        # Every plant second, five tanks: the vectors (all of one length, `Components.empty`'s)
        # are zipped without `strict`, which cost more than the sums, and min(1.0, share) is a
        # comparison (measured: 83,000 -> 77,000 instructions a step). The arithmetic is the
        # same, in the same order.
        p = self.p
        target = self.setpoint * (1.0 - self.speed_loss) if self.line.blending else 0.0
        self.speed += (target - self.speed) * self._speed_alpha

        tanks, masses, inlet = self.tanks, self.tank_mass, self.inlet
        if inlet[-1] > 0.0:  # powder arrived (its bulk volume is the last slot)
            masses[0] += sum(inlet, 0.0) - inlet[-1]
            tanks[0] = [x + y for x, y in zip(tanks[0], inlet, strict=False)]
            inlet[:] = self._empty  # in place: the feeders hold this list

        out = self._empty
        out_mass = 0.0
        speed = self.speed
        if speed > MIN_SPEED_RPM:
            if speed != self._m_ref_speed:
                self._m_ref_speed = speed
                self._m_ref = self._holdup_per_tank * (p.speed_ref_rpm / speed) ** p.speed_exponent
            m_ref, inv_exp = self._m_ref, self._inv_exp
            capacity = self._flow_ref_kgs * dt
            # Last tank first, so every tank passes on what it held at the start of the step
            # (its share is worked out before the tank above adds to it).
            last = len(tanks) - 1
            for n in range(last, -1, -1):
                m = masses[n]
                share = capacity * (m / m_ref) ** inv_exp / m if m > 0.0 else 0.0
                if not share < 1.0:  # min(1.0, share) without the call (1.0 for NaN too)
                    share = 1.0
                if share == 0.0:
                    continue
                tank = tanks[n]
                keep = 1.0 - share
                moved_mass = m * share
                masses[n] = m - moved_mass
                if n == last:
                    out, out_mass = [x * share for x in tank], moved_mass
                else:
                    below = tanks[n + 1]
                    tanks[n + 1] = [d + x * share for d, x in zip(below, tank, strict=False)]
                    masses[n + 1] += moved_mass
                tanks[n] = [x * keep for x in tank]
        self.out_flow_kgh = out_mass * 3600.0 / dt
        if out_mass > 0.0:
            self.outlet_api_pct = 100.0 * out[self._api] / out_mass
            if len(self.outlets) == 1:
                self.outlets[0].put(out_mass, out)
            else:
                share = 1.0 / len(self.outlets)
                for outlet in self.outlets:
                    outlet.put(out_mass * share, [x * share for x in out])
        self._publish(now)

    def _publish(self, now: float) -> None:
        p, values, k = self.p, self.ctx.store.values, self._k
        holdup = self.holdup
        values[k[0]] = self.speed
        values[k[1]] = holdup
        values[k[2]] = self.out_flow_kgh
        values[k[3]] = holdup / self.out_flow_kgh * 3600.0 if self.out_flow_kgh > 1e-6 else 0.0
        values[k[4]] = (
            (
                p.motor_current_idle_a
                + p.motor_current_a_per_kg * holdup
                + p.motor_current_a_per_rpm * self.speed
            )
            if self.speed > MIN_SPEED_RPM
            else 0.0
        )
        values[k[5]] = self.outlet_api_pct
        self.ctx.store.stamps[self.id] = now

    def apply_fault(self, kind: str, magnitude: float) -> None:
        if kind == "impeller_slowdown":
            self.speed_loss = magnitude

    def remove_fault(self, kind: str) -> None:
        if kind == "impeller_slowdown":
            self.speed_loss = 0.0

    def write(self, name: str, value: float | int) -> None:
        if name == "speed_sp":
            self.setpoint = float(value)
        self.ctx.store.values[f"{self.id}.{name}"] = value

    def warm_start(self, inflow_kgh: float, composition: list[float]) -> None:
        """Fill the tanks with their steady-state hold-up of a blend of `composition` (per kg)."""
        p = self.p
        self.speed = self.setpoint
        holdup = steady_holdup_kg(
            inflow_kgh,
            self.speed,
            p.holdup_ref_kg,
            p.flow_ref_kgh,
            p.speed_ref_rpm,
            p.flow_exponent,
            p.speed_exponent,
        )
        per_tank = holdup / p.tanks
        for n in range(p.tanks):
            self.tanks[n] = [x * per_tank for x in composition]
            self.tank_mass[n] = per_tank
        self.outlet_api_pct = 100.0 * composition[self._api]
        self.out_flow_kgh = inflow_kgh
