"""Loss-in-weight feeder (Engisch & Muzzio 2015).

The screw delivers `feed factor x drive command`; the feed factor falls as the hopper empties
and jumps when a refill densifies the powder. In gravimetric mode the feeder learns its feed
factor from the loss of hopper weight and sets the drive for the setpoint; during a refill the
load cells cannot see the screw's output, so it runs volumetrically on the last drive command.
"""

from __future__ import annotations

import math

from core.layout import ModuleSpec
from core.parameters import FeederParams
from core.tags import Quality
from twin.context import Context
from twin.line import FEEDING

GRAVIMETRIC, VOLUMETRIC = 0, 1
BRIDGING_ONSET_S = 10.0  # s for a bridge to build up once it forms (est.)


class Feeder:
    """One loss-in-weight feeder feeding a blender inlet."""

    def __init__(self, ctx: Context, spec: ModuleSpec, inlet: list[float]) -> None:
        p: FeederParams = spec.params
        self.ctx, self.id, self.p = ctx, spec.id, p
        self.line = ctx.line  # created before every other module
        self.rng = ctx.rng(spec.id)
        self.inlet = inlet
        self.component = ctx.components.names.index(p.material)
        self.volume_slot = ctx.components.volume
        ctx.ledger.fed_kg[spec.id] = 0.0

        self.setpoint = p.flow_sp_kgh
        self.mode_sp = GRAVIMETRIC
        self.hopper = p.hopper_start_kg  # true mass, kg
        self.drive = 0.0
        self.true_flow = 0.0
        self.filtered_flow = 0.0
        self.noise = 0.0
        self.refilling = False
        self.volumetric_until = -math.inf
        self.densification = 0.0
        self.lot = 1

        # Fault state, set by twin.faults through apply_fault/remove_fault.
        self.refill_spike_extra = 0.0
        self.drift_per_h = 0.0
        self.drift_factor = 1.0
        self.bridging = 0.0
        self.bridging_now = 0.0
        self.noise_gain = 1.0
        self.load_cell_bias = 0.0  # target bias of the reported flow, fraction of setpoint
        self.load_cell_bias_kgh = 0.0  # bias now, kg/h
        self.load_cell_offset_kg = 0.0  # how far the load-cell reading has drifted, kg
        self.density_factor = 1.0
        self.feed_factor_estimate = self._feed_factor()

        dt = ctx.dt
        self._phi = math.exp(-dt / p.noise_corr_s)
        self._innovation = math.sqrt(1.0 - self._phi**2)
        self._densify_decay = math.exp(-dt / p.densification_decay_s)
        self._pv_alpha = dt / (p.pv_filter_s + dt)
        self._learn = dt / p.feed_factor_learn_s
        self._refill_rate = (p.refill_target_kg - p.refill_level_kg) / p.refill_time_s
        self._litres_per_kg = 1.0 / p.bulk_density_g_cm3
        self._fed = ctx.ledger.fed_kg
        k = spec.id
        self._k = (
            f"{k}.mass_flow_pv",
            f"{k}.hopper_mass",
            f"{k}.drive_command",
            f"{k}.feed_factor",
            f"{k}.mode",
            f"{k}.refilling",
            f"{k}.refill_lot",
            f"{k}.true_flow",
        )
        ctx.store.values[f"{k}.mass_flow_sp"] = self.setpoint
        ctx.store.values[f"{k}.mode_sp"] = self.mode_sp
        self._publish(0.0, VOLUMETRIC)

    def _feed_factor(self) -> float:
        p = self.p
        fill = self.hopper / p.hopper_capacity_kg
        return (
            p.feed_factor_kgh_pct
            * (1.0 - p.feed_factor_fill_loss * (1.0 - fill))
            * (1.0 + self.densification)
            * self.drift_factor
            * (1.0 - self.bridging_now)
            * self.density_factor
        )

    def force_refill(self) -> None:
        """Start a refill now, whatever the hopper level (used by a refill disturbance)."""
        if not self.refilling:
            self.refilling = True
            self.ctx.event(self.id, "refill", f"refill started at {self.hopper:.2f} kg (forced)")

    def step(self, now: float, dt: float) -> None:
        # Every plant second: min and max of two by comparison, which Python 3.11's builtins
        # (parsing their keywords on every call) cost 700 instructions each (measured, with the
        # press's alike: the twin's instructions a plant second 308,500 -> 290,700). Same values,
        # NaN included.
        p = self.p
        running = self.line.state in FEEDING  # `Line.feeding`, without the property's call
        if self.refilling:
            self.hopper = min(p.hopper_capacity_kg, self.hopper + self._refill_rate * dt)
            if self.hopper >= p.refill_target_kg or self.hopper >= p.hopper_capacity_kg:
                self.refilling = False
                self.lot += 1
                self.densification = p.refill_densification + self.refill_spike_extra
                self.volumetric_until = now + p.volumetric_hold_s
                self.ctx.event(self.id, "refill", f"refill done, lot {self.lot}")
        elif running and self.hopper < p.refill_level_kg:
            self.refilling = True
            self.ctx.event(self.id, "refill", f"refill started at {self.hopper:.2f} kg")
        self.densification *= self._densify_decay
        if self.bridging_now != self.bridging:
            self.bridging_now += (self.bridging - self.bridging_now) * min(
                1.0, dt / BRIDGING_ONSET_S
            )
        if self.drift_per_h:
            self.drift_factor *= 1.0 + self.drift_per_h * dt / 3600.0

        volumetric = self.mode_sp == VOLUMETRIC or self.refilling or now < self.volumetric_until
        if running:
            if not volumetric and self.feed_factor_estimate > 0.0:
                drive = self.setpoint / self.feed_factor_estimate
                self.drive = drive if drive < 100.0 else 100.0  # min(100.0, drive)
            # The flow's relative noise is AR(1); a reading's (`_publish`) is white. Written out,
            # not in helper functions whose calls cost more than their arithmetic (measured,
            # with the press's alike: the closed loop's 717,600 -> 709,300 instructions a
            # plant second). The same draws, in the same order, the same arithmetic.
            innovation_sd = self._innovation * p.flow_rsd * self.noise_gain
            self.noise = noise = self._phi * self.noise + self.rng.gauss(0.0, innovation_sd)
            flow = self._feed_factor() * self.drive * (1.0 + noise)
            kg = flow * dt / 3600.0 if flow > 0.0 else 0.0
            if flow > 0.0 and self.hopper < kg:  # min(kg, hopper), as before
                kg = self.hopper
            self.hopper -= kg
            self.true_flow = kg * 3600.0 / dt
            inlet = self.inlet
            inlet[self.component] += kg
            inlet[self.volume_slot] += kg * self._litres_per_kg / self.density_factor
            self._fed[self.id] += kg
        else:
            self.drive = 0.0
            self.true_flow = 0.0

        # A drifting load cell reads the hopper lighter and lighter, which looks like more flow.
        target_bias = self.load_cell_bias * self.setpoint if self.load_cell_bias else 0.0
        if self.load_cell_bias_kgh != target_bias:
            ramp = abs(target_bias) * dt / p.load_cell_ramp_s if target_bias else math.inf
            delta = target_bias - self.load_cell_bias_kgh
            self.load_cell_bias_kgh += max(-ramp, min(ramp, delta))
        if running and self.load_cell_bias_kgh:
            self.load_cell_offset_kg -= self.load_cell_bias_kgh * dt / 3600.0
        measured = self.true_flow + self.load_cell_bias_kgh if running else 0.0
        self.filtered_flow += (measured - self.filtered_flow) * self._pv_alpha
        if running and not volumetric and self.drive > 0.0:
            observed = self.filtered_flow / self.drive
            self.feed_factor_estimate += (observed - self.feed_factor_estimate) * self._learn
        self._publish(now, VOLUMETRIC if volumetric else GRAVIMETRIC)

    def _publish(self, now: float, mode: int) -> None:
        store = self.ctx.store
        values = store.values
        k = self._k
        if mode == VOLUMETRIC and self.drive > 0.0:
            # Load cells are blind during a refill: report the volumetric estimate, Uncertain.
            values[k[0]] = self.drive * self.feed_factor_estimate
            store.quality[k[0]] = Quality.UNCERTAIN
        else:
            flow = self.filtered_flow * (1.0 + self.rng.gauss(0.0, self.p.pv_noise_rsd))
            values[k[0]] = flow if flow > 0.0 else 0.0  # max(0.0, flow): see `step`
            store.quality.pop(k[0], None)
        hopper = self.hopper + self.load_cell_offset_kg
        values[k[1]] = hopper if hopper > 0.0 else 0.0
        values[k[2]] = self.drive
        values[k[3]] = self.feed_factor_estimate
        values[k[4]] = mode
        values[k[5]] = self.refilling
        values[k[6]] = self.lot
        values[k[7]] = self.true_flow
        store.stamps[self.id] = now

    # Faults -----------------------------------------------------------------------------
    def apply_fault(self, kind: str, magnitude: float) -> None:
        if kind == "refill_disturbance":
            self.refill_spike_extra = magnitude
            self.force_refill()
        elif kind == "feed_factor_drift":
            self.drift_per_h = magnitude
        elif kind == "bridging":
            self.bridging = magnitude
        elif kind == "feeder_noise":
            self.noise_gain = magnitude
        elif kind == "load_cell_drift":
            self.load_cell_bias = magnitude
        elif kind == "lot_density_change":
            self.density_factor = 1.0 + magnitude

    def remove_fault(self, kind: str) -> None:
        if kind == "refill_disturbance":
            self.refill_spike_extra = 0.0
        elif kind == "feed_factor_drift":
            self.drift_per_h = 0.0
            self.drift_factor = 1.0
        elif kind == "bridging":
            self.bridging = 0.0
        elif kind == "feeder_noise":
            self.noise_gain = 1.0
        elif kind == "load_cell_drift":
            # Maintenance re-tares the load cell: the reading is true again.
            self.load_cell_bias = 0.0
            self.load_cell_bias_kgh = 0.0
            self.load_cell_offset_kg = 0.0
        elif kind == "lot_density_change":
            self.density_factor = 1.0

    # Commands ---------------------------------------------------------------------------
    def write(self, name: str, value: float | int) -> None:
        if name == "mass_flow_sp":
            self.setpoint = float(value)
        elif name == "mode_sp":
            self.mode_sp = int(value)
        self.ctx.store.values[f"{self.id}.{name}"] = value

    def warm_start(self) -> None:
        """Start as if the line had been producing for a while: drive and estimate settled."""
        self.feed_factor_estimate = self._feed_factor()
        self.drive = self.setpoint / self.feed_factor_estimate
        self.filtered_flow = self.setpoint
        self.volumetric_until = -math.inf
