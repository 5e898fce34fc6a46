"""Plant time against the wall clock: how far the twin should have run, and what UTC that is."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class PlantClock:
    """Maps wall time to plant time at a speed factor, and plant time to UTC.

    Plant time `t` (seconds since the twin was built) is shown to clients as
    `start_utc + t`, so source timestamps come from the plant, not from the server's clock.
    At a speed above 1 plant time runs ahead of the wall clock, and so do the timestamps.

    Args:
        speed: plant seconds per wall second (1 is real time).
        start_utc: the UTC time of plant time 0; None means now.
        plant_now: plant time when the clock starts (a warm twin may not be at 0).
        monotonic: the wall clock, replaceable in tests.
    """

    def __init__(
        self,
        speed: float,
        start_utc: datetime | None = None,
        plant_now: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be above 0")
        self.speed = speed
        self.start_utc = start_utc or datetime.now(UTC)
        self._monotonic = monotonic
        self._wall0 = monotonic()
        self._plant0 = plant_now

    def restart(self, plant_now: float) -> None:
        """Count wall time from now, starting at plant time `plant_now` (UTC mapping kept)."""
        self._wall0 = self._monotonic()
        self._plant0 = plant_now

    def target(self) -> float:
        """The plant time the twin should have reached now."""
        return self._plant0 + (self._monotonic() - self._wall0) * self.speed

    def wall_delay(self, plant_s: float) -> float:
        """Wall seconds until `target()` reaches `plant_s` (negative once it has)."""
        return self._wall0 + (plant_s - self._plant0) / self.speed - self._monotonic()

    def next_instant(self, plant_now: float, step_s: float) -> float:
        """The first whole multiple of `step_s` (plant seconds) after `plant_now`."""
        return (_instant_index(plant_now, step_s) + 1) * step_s

    def missed_instants(
        self, plant_now: float, target: float, step_s: float, most: int
    ) -> list[float]:
        """The instants (whole multiples of `step_s`) after `plant_now` and before the last one
        at or before `target`: those a late clock passed without a tick; the newest `most`."""
        first = _instant_index(plant_now, step_s) + 1
        last = _instant_index(target, step_s)  # the tick at `target` covers this one
        return [k * step_s for k in range(max(first, last - most), last)]

    def utc(self, plant_s: float) -> datetime:
        """The UTC time a plant time stands for."""
        return self.start_utc + timedelta(seconds=plant_s)

    def plant_time(self, when: datetime) -> float:
        """The plant time a UTC time stands for (the inverse of `utc`)."""
        return (when - self.start_utc).total_seconds()


def _instant_index(plant_s: float, step_s: float) -> int:
    """k of the last instant k * step_s at or before `plant_s`; the 1e-9 absorbs float error
    (0.30000000000000004 is on the instant 0.3, its next is 0.4)."""
    return math.floor(plant_s / step_s + 1e-9)
