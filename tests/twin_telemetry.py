"""Telemetry as the edge publishes it, made from a twin run: for controller tests.

Each second the twin's snapshot without ground truth is cut into one `TelemetryBatch` per
module, holding the samples whose source time moved on, stamped `start_ns + plant time`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from core.payload import Sample, TelemetryBatch
from twin import Plant

START_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z: plant time 0


@dataclass
class EdgeLike:
    """Turns twin snapshots into the batches an edge would publish."""

    plant: Plant
    site: str = "site1"
    start_ns: int = START_NS
    seq: int = 0
    _last: dict[str, float] = field(default_factory=dict)

    def plant_ns(self, plant_s: float) -> int:
        return self.start_ns + round(plant_s * 1e9)

    def batches(self) -> list[TelemetryBatch]:
        """The changed samples of the twin's snapshot now, one batch per module."""
        by_module: dict[str, list[Sample]] = {}
        sent_ns = self.plant_ns(self.plant.now)
        for tag, value in self.plant.snapshot(include_truth=False).items():
            if value.source_time <= self._last.get(tag, -1.0):
                continue
            self._last[tag] = value.source_time
            self.seq += 1
            source_ns = self.plant_ns(value.source_time)
            sample = Sample(tag, value.value, str(value.quality), source_ns, sent_ns, self.seq)
            by_module.setdefault(tag.partition(".")[0], []).append(sample)
        return [
            TelemetryBatch(self.site, module, sent_ns, tuple(samples))
            for module, samples in by_module.items()
        ]

    def run(self, until_s: float, step_s: float = 1.0) -> Iterator[list[TelemetryBatch]]:
        """Advance the twin second by second, yielding each second's batches."""
        while self.plant.now < until_s:
            self.plant.advance(min(until_s, self.plant.now + step_s))
            yield self.batches()
