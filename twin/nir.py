"""NIR probe at the blender outlet: a noisy, possibly biased or failing view of API content."""

from __future__ import annotations

import random

from core.layout import ModuleSpec
from core.parameters import NirParams
from core.tags import Quality
from twin.blender import Blender
from twin.context import Context, ProcessGenerator

OUTLIER_MIN_PCT, OUTLIER_MAX_PCT = 2.0, 6.0  # % w/w, size of a spiky reading (est.)


def prediction_error(rng: random.Random, sd: float) -> float:
    """Chemometric prediction error of one spectrum."""
    return rng.gauss(0.0, sd)


def outlier(rng: random.Random) -> float:
    """A spike from a bad spectrum (air gap, fouling flake), either sign."""
    return rng.choice((-1.0, 1.0)) * rng.uniform(OUTLIER_MIN_PCT, OUTLIER_MAX_PCT)


class Nir:
    def __init__(self, ctx: Context, spec: ModuleSpec, blender: Blender) -> None:
        p: NirParams = spec.params
        self.ctx, self.id, self.p = ctx, spec.id, p
        self.rng = ctx.rng(spec.id)
        self.blender = blender
        self.bias = 0.0
        self.dropout_p = 0.0
        self.readings = 0
        self._k = (f"{spec.id}.api_pct", f"{spec.id}.spectrum_ok", f"{spec.id}.reading_count")
        ctx.store.quality[self._k[0]] = Quality.BAD

    def start(self) -> None:
        self.ctx.env.process(self.run())

    def run(self) -> ProcessGenerator:
        env, period = self.ctx.env, self.p.period_s
        while True:
            yield env.timeout(period)
            self.acquire(env.now)

    def acquire(self, now: float) -> None:
        store, k, rng = self.ctx.store, self._k, self.rng
        if self.blender.out_flow_kgh < self.p.min_flow_kgh:
            # No moving powder in front of the window: nothing to predict from.
            store.values[k[1]] = False
            store.quality[k[0]] = Quality.BAD
            return
        self.readings += 1
        store.values[k[2]] = self.readings
        if self.dropout_p and rng.random() < self.dropout_p:
            store.values[k[1]] = False
            store.quality[k[0]] = Quality.BAD
            if rng.random() < 0.5:
                return  # dropout: the value goes stale, its source time with it
            value = self.blender.outlet_api_pct + self.bias + outlier(rng)
        else:
            value = (
                self.blender.outlet_api_pct
                + self.bias
                + prediction_error(rng, self.p.noise_sd_pct_ww)
            )
            store.values[k[1]] = True
            store.quality.pop(k[0], None)
        store.values[k[0]] = max(0.0, value)
        store.stamps[self.id] = now

    def apply_fault(self, kind: str, magnitude: float) -> None:
        if kind == "nir_bias":
            self.bias = magnitude
        elif kind == "nir_dropout":
            self.dropout_p = magnitude

    def remove_fault(self, kind: str) -> None:
        if kind == "nir_bias":
            self.bias = 0.0
        elif kind == "nir_dropout":
            self.dropout_p = 0.0

    def write(self, name: str, value: float | int) -> None:
        raise KeyError(name)  # the probe has no setpoints
