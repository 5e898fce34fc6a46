"""Press hopper and feed frame: plug flow from the blender outlet to the dies."""

from __future__ import annotations

from core.layout import ModuleSpec
from core.parameters import FeedFrameParams
from twin.context import Context
from twin.material import PlugFlowHopper


class FeedFrame:
    """A passive hopper; the press draws from it and publishes its tags each step."""

    def __init__(self, ctx: Context, spec: ModuleSpec) -> None:
        p: FeedFrameParams = spec.params
        self.ctx, self.id, self.p = ctx, spec.id, p
        self.hopper = PlugFlowHopper(ctx.components)
        self.setpoint = p.speed_sp_rpm
        self.speed = 0.0
        self._k = (f"{spec.id}.level", f"{spec.id}.speed_pv")
        ctx.store.values[f"{spec.id}.speed_sp"] = self.setpoint

    @property
    def level(self) -> float:
        return self.hopper.mass

    def put(self, mass: float, parcel: list[float]) -> None:
        self.hopper.put(mass, parcel)

    @property
    def overfill(self) -> float:
        """Fractional extra die fill from paddle speed above its reference."""
        p = self.p
        return 1.0 + p.overfill_per_rpm * (self.speed - p.speed_ref_rpm) if self.speed else 1.0

    def publish(self, now: float, running: bool) -> None:
        self.speed = self.setpoint if running else 0.0
        values = self.ctx.store.values
        values[self._k[0]] = self.hopper.mass
        values[self._k[1]] = self.speed
        self.ctx.store.stamps[self.id] = now

    def write(self, name: str, value: float | int) -> None:
        if name == "speed_sp":
            self.setpoint = float(value)
        self.ctx.store.values[f"{self.id}.{name}"] = value

    def apply_fault(self, kind: str, magnitude: float) -> None:
        """The feed frame has no faults of its own in the catalogue."""

    def remove_fault(self, kind: str) -> None:
        """The feed frame has no faults of its own in the catalogue."""
