"""Rotary tablet press.

Fill depth and the blend's bulk density set tablet weight; at a fixed punch gap the Kawakita
equation, `(V0 - V) / V0 = a b P / (1 + b P)`, turns weight into compaction pressure (Su et al.
2019), and the tablet's solid fraction sets its hardness (Ryshkewitch-Duckworth). Turret speed
sets the production rate. Each step's tablets are one `TabletSlice` of the ledger, with their
true API content taken from the powder actually drawn from the feed frame.
"""

from __future__ import annotations

import math

from core.layout import ModuleSpec
from core.parameters import PressParams
from core.tags import Quality
from twin.context import Context
from twin.diverter import Diverter
from twin.feed_frame import FeedFrame
from twin.ledger import TabletSlice

MAX_PRESSURE_MPA = 600.0  # tooling limit; Kawakita diverges as compaction nears a


def kawakita_pressure_mpa(
    weight_mg: float, gap_mm: float, area_mm2: float, p: PressParams
) -> float:
    """Compaction pressure to squeeze `weight_mg` of powder into a gap of `gap_mm`."""
    if weight_mg <= 0.0:
        return 0.0
    v0 = weight_mg / p.kawakita_ref_density_g_cm3  # mm3, since mg / (g/cm3) = mm3
    c = 1.0 - area_mm2 * gap_mm / v0
    if c <= 0.0:
        return 0.0
    if c >= p.kawakita_a:
        return MAX_PRESSURE_MPA
    pressure = c / (p.kawakita_b_per_mpa * (p.kawakita_a - c))
    # min(MAX_PRESSURE_MPA, pressure) by comparison, as in `Feeder.step` (NaN included)
    return pressure if pressure < MAX_PRESSURE_MPA else MAX_PRESSURE_MPA


def hardness_n(weight_mg: float, thickness_mm: float, area_mm2: float, p: PressParams) -> float:
    """Breaking force from the tablet's porosity (Ryshkewitch-Duckworth)."""
    if weight_mg <= 0.0:
        return 0.0
    solid_fraction = weight_mg / (p.true_density_g_cm3 * area_mm2 * thickness_mm)
    porosity = 1.0 - solid_fraction
    porosity = porosity if porosity > 0.0 else 0.0  # max(0.0, porosity): see `Feeder.step`
    return p.hardness_max_n * math.exp(-p.hardness_porosity_k * porosity)


class Press:
    def __init__(
        self, ctx: Context, spec: ModuleSpec, feed_frame: FeedFrame, diverter: Diverter
    ) -> None:
        p: PressParams = spec.params
        self.ctx, self.id, self.p = ctx, spec.id, p
        self.line = ctx.line  # created before every other module
        self.rng = ctx.rng(spec.id)
        self.feed_frame, self.diverter = feed_frame, diverter
        self.area_mm2 = math.pi * (p.die_diameter_mm / 2.0) ** 2
        self.turret_sp = p.turret_speed_sp_rpm
        self.fill_depth_sp = p.fill_depth_sp_mm
        self.gap_sp = p.main_gap_sp_mm
        self.turret = 0.0
        self.fill_depth = p.fill_depth_sp_mm
        self.primed = False  # feed frame has reached its start level since the line started
        self.starved_s = 0.0
        self.tablets_total = 0.0
        self.last_content_pct = 0.0
        self._weight = self._thickness = self._hardness = 0.0
        self._gap = self.gap_sp
        self._api = ctx.components.api
        self._vol = ctx.components.volume

        # Fault state.
        self.wear_rate_mm_h = 0.0
        self.wear_mm = 0.0
        self.stiction_mm = 0.0
        self.turret_offset = 0.0

        k = spec.id
        self._k = (
            f"{k}.turret_speed_pv",
            f"{k}.fill_depth_pv",
            f"{k}.main_force",
            f"{k}.pre_force",
            f"{k}.tablet_weight",
            f"{k}.thickness",
            f"{k}.hardness",
            f"{k}.production_rate",
            f"{k}.tablets_total",
            f"{k}.true_api_content",
        )
        # Readings that exist only while tablets are made (main, pre, weight, thickness, hardness).
        self._measured = (self._k[2], self._k[3], self._k[4], self._k[5], self._k[6])
        for key in self._measured:
            ctx.store.quality[key] = Quality.BAD
        self._measured_bad = True  # the readings above are flagged Bad now
        values = ctx.store.values
        values[f"{k}.turret_speed_sp"] = self.turret_sp
        values[f"{k}.fill_depth_sp"] = self.fill_depth_sp
        values[f"{k}.main_gap_sp"] = self.gap_sp
        values[self._k[1]] = self.fill_depth

    def _move_fill_depth(self, dt: float) -> None:
        error = self.fill_depth_sp - self.fill_depth
        if self.stiction_mm > 0.0:
            # Stick-slip: the actuator holds until the force builds past the band, then jumps.
            if abs(error) > self.stiction_mm:
                self.fill_depth = self.fill_depth_sp
            return
        limit = self.p.fill_depth_rate_mm_s * dt
        # max(-limit, min(limit, error)) by comparison, as in `Feeder.step`
        move = error if error < limit else limit
        self.fill_depth += move if move > -limit else -limit

    def step(self, now: float, dt: float) -> None:
        p = self.p
        line, frame = self.line, self.feed_frame
        starting = line.starting
        if not self.primed and starting and frame.level >= frame.p.start_level_kg:
            self.primed = True
        running = line.pressing and (self.primed or not starting)
        target = self.turret_sp + self.turret_offset if running else 0.0
        limit = p.turret_accel_rpm_s * dt
        # max(-limit, min(limit, change)) by comparison, as in `Feeder.step` (which says why).
        change = target - self.turret
        change = change if change < limit else limit
        self.turret += change if change > -limit else -limit
        if line.faulted:
            self.turret = 0.0
        self._move_fill_depth(dt)
        if self.wear_rate_mm_h:
            self.wear_mm += self.wear_rate_mm_h * dt / 3600.0

        tablets = self.turret * p.stations / 60.0 * dt
        weight = 0.0
        if tablets > 0.0:
            density = frame.hopper.head_density()
            weight = self.fill_depth * self.area_mm2 * density * frame.overfill
            demand = tablets * weight * 1e-6
            got, drawn = frame.hopper.take(demand)
            if got < demand * 0.999:
                self.starved_s += dt
                weight *= got / demand  # dies fill only partly
            else:
                self.starved_s = 0.0
            if got > 0.0:
                self._make(now, tablets, got, drawn, weight)
        else:
            self.starved_s = 0.0
        frame.publish(now, running)
        self._publish(now, tablets, weight)

    def _make(
        self, now: float, tablets: float, mass: float, drawn: list[float], weight: float
    ) -> None:
        p = self.p
        api_mg = weight * drawn[self._api] / mass
        content = 100.0 * api_mg / p.api_label_claim_mg
        gap = self.gap_sp + self.wear_mm
        thickness = gap * (1.0 + p.elastic_recovery)
        hardness = hardness_n(weight, thickness, self.area_mm2, p)
        oos = (
            not p.content_low_pct <= content <= p.content_high_pct
            or abs(weight / p.weight_target_mg - 1.0) > p.weight_tolerance
            or not p.hardness_min_n <= hardness <= p.hardness_max_spec_n
        )
        forced = self.diverter.forced_reject
        diverted = self.diverter.receive(tablets, mass, oos)
        self.tablets_total += tablets
        self.last_content_pct = content
        self._weight, self._thickness, self._hardness, self._gap = weight, thickness, hardness, gap
        # Positional, not by keyword: a slice every plant second (measured: the twin's 316,000
        # instructions a plant second 5,000 fewer).
        self.ctx.ledger.record(
            TabletSlice(
                now,  # time
                self.id,  # press
                tablets,
                mass,  # mass_kg
                weight,  # weight_mg
                content,  # content_pct
                hardness,  # hardness_n
                oos,
                diverted,
                diverted and forced,  # forced
            )
        )

    def _publish(self, now: float, tablets: float, weight: float) -> None:
        p, rng, values, k = self.p, self.rng, self.ctx.store.values, self._k
        values[k[0]] = self.turret
        values[k[1]] = self.fill_depth
        quality = self.ctx.store.quality
        if weight > 0.0 and tablets > 0.0:
            if self._measured_bad:
                for key in self._measured:
                    quality.pop(key, None)
                self._measured_bad = False
            area = self.area_mm2
            main = kawakita_pressure_mpa(weight, self._gap, area, p) * area / 1000.0
            pre = (
                kawakita_pressure_mpa(weight, p.pre_gap_mm + self.wear_mm, area, p) * area / 1000.0
            )
            # Instrument readings with relative noise, written out as in `Feeder.step`
            gauss = rng.gauss
            values[k[2]] = main * (1.0 + gauss(0.0, p.force_noise_rsd))
            values[k[3]] = pre * (1.0 + gauss(0.0, p.force_noise_rsd))
            values[k[4]] = weight * (1.0 + gauss(0.0, p.weight_noise_rsd))
            values[k[5]] = self._thickness
            values[k[6]] = self._hardness * (1.0 + gauss(0.0, p.hardness_noise_rsd))
            values[k[9]] = self.last_content_pct
        else:
            # No tablets, nothing to weigh or squeeze: the instruments have no reading.
            values[k[2]] = values[k[3]] = 0.0
            for key in self._measured:
                quality[key] = Quality.BAD
            self._measured_bad = True
        values[k[7]] = tablets / self.ctx.dt * 3600.0
        values[k[8]] = int(self.tablets_total)
        self.ctx.store.stamps[self.id] = now

    def apply_fault(self, kind: str, magnitude: float) -> None:
        if kind == "punch_wear":
            self.wear_rate_mm_h = magnitude
        elif kind == "fill_depth_stiction":
            self.stiction_mm = magnitude
        elif kind == "turret_speed_step":
            self.turret_offset = magnitude

    def remove_fault(self, kind: str) -> None:
        if kind == "punch_wear":
            # The wear stops growing; what is worn stays worn until the tooling is changed.
            self.wear_rate_mm_h = 0.0
        elif kind == "fill_depth_stiction":
            self.stiction_mm = 0.0
        elif kind == "turret_speed_step":
            self.turret_offset = 0.0

    def write(self, name: str, value: float | int) -> None:
        if name == "turret_speed_sp":
            self.turret_sp = float(value)
        elif name == "fill_depth_sp":
            self.fill_depth_sp = float(value)
        elif name == "main_gap_sp":
            self.gap_sp = float(value)
        self.ctx.store.values[f"{self.id}.{name}"] = value

    def warm_start(self) -> None:
        self.turret = self.turret_sp
        self.fill_depth = self.fill_depth_sp
        self.primed = True
