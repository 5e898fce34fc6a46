"""The pod's room: temperature, humidity and differential pressure wandering around set values."""

from __future__ import annotations

import math
import random

from core.layout import ModuleSpec
from core.parameters import EnvironmentParams
from twin.context import Context, ProcessGenerator


def wander(rng: random.Random, value: float, mean: float, sd: float, keep: float) -> float:
    """One Ornstein-Uhlenbeck step: pulled back to `mean`, stationary SD `sd`."""
    return mean + (value - mean) * keep + rng.gauss(0.0, sd * math.sqrt(1.0 - keep * keep))


class Environment:
    def __init__(self, ctx: Context, spec: ModuleSpec) -> None:
        p: EnvironmentParams = spec.params
        self.ctx, self.id, self.p = ctx, spec.id, p
        self.rng = ctx.rng(spec.id)
        self.temperature, self.humidity, self.pressure = (
            p.temperature_c,
            p.humidity_pct,
            p.diff_pressure_pa,
        )
        self._keep = math.exp(-p.period_s / p.wander_time_s)
        self._k = (f"{spec.id}.temperature", f"{spec.id}.humidity", f"{spec.id}.diff_pressure")
        self._publish(0.0)

    def start(self) -> None:
        self.ctx.env.process(self.run())

    def run(self) -> ProcessGenerator:
        env, p = self.ctx.env, self.p
        while True:
            yield env.timeout(p.period_s)
            rng, keep = self.rng, self._keep
            self.temperature = wander(
                rng, self.temperature, p.temperature_c, p.temperature_sd_c, keep
            )
            self.humidity = wander(rng, self.humidity, p.humidity_pct, p.humidity_sd_pct, keep)
            self.pressure = wander(
                rng, self.pressure, p.diff_pressure_pa, p.diff_pressure_sd_pa, keep
            )
            self._publish(env.now)

    def _publish(self, now: float) -> None:
        values, k = self.ctx.store.values, self._k
        values[k[0]], values[k[1]], values[k[2]] = self.temperature, self.humidity, self.pressure
        self.ctx.store.stamps[self.id] = now

    def apply_fault(self, kind: str, magnitude: float) -> None:
        """The room has no faults in the catalogue."""

    def remove_fault(self, kind: str) -> None:
        """The room has no faults in the catalogue."""

    def write(self, name: str, value: float | int) -> None:
        raise KeyError(name)
