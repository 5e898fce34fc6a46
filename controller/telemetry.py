"""The controller's view of the plant: the newest reading of every tag it has been shown."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

_TIME = itemgetter(2)  # a reading's source time


@dataclass(frozen=True, slots=True)
class Reading:
    value: Any
    quality: str
    time: float


class _TagView(Mapping[str, Reading]):
    """The newest reading of every tag, read-only; kept as plain tuples underneath, because the
    supervisor takes some sixty of them every plant second."""

    def __init__(self, raw: dict[str, tuple[Any, str, float]]) -> None:
        self._raw = raw

    def __getitem__(self, tag: str) -> Reading:
        return Reading(*self._raw[tag])

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


@dataclass(slots=True)
class Shared:
    """Readings several units use at each decision, read once by `Supervisor.step`: the fill
    depth by the gate, the stroke test and two detectors, the API feeder's by the blend, the
    drain and the detectors (each `Telemetry.v` costs a call and a lookup; measured with the
    rest: see `Supervisor.step`)."""

    depth_sp: float = math.nan  # the press's fill depth, set...
    depth_pv: float = math.nan  # ...and measured
    feed_factor: float = math.nan  # the API feeder's learnt feed factor
    gravimetric: bool = False  # the API feeder's mode reads gravimetric (0)
    api_sp: float = 0.0  # the API feeder's flow setpoint (0.0 when not shown)


class Telemetry:
    """Tag readings as they arrive (value, quality, source time) and the newest source time."""

    def __init__(self) -> None:
        self.raw: dict[str, tuple[Any, str, float]] = {}  # tag -> (value, quality, time)
        self.tags: Mapping[str, Reading] = _TagView(self.raw)
        self.newest = -math.inf

    def observe(self, tag: str, value: Any, quality: str, source_time: float) -> None:
        self.raw[tag] = (value, quality, source_time)
        self.newest = max(self.newest, source_time)

    def observe_all(
        self, readings: Mapping[str, tuple[Any, str, float]], newest: float | None = None
    ) -> None:
        """Take a snapshot; `newest` is its newest source time, when the sender knows it."""
        if readings:
            self.raw.update(readings)
            if newest is None:
                # One pass over the snapshot, then one comparison (a third cheaper than
                # max(a, *many)).
                newest = max(map(_TIME, readings.values()))
            # max(self.newest, newest), by comparison (Supervisor.step says why)
            self.newest = newest if newest > self.newest else self.newest

    def observe_shown(
        self, show: Callable[[dict[str, tuple[Any, str, float]]], None], newest: float
    ) -> None:
        """Take a snapshot that `show` writes straight into `raw`, its newest source time
        `newest` (`Supervisor.observe_plant`)."""
        show(self.raw)
        self.newest = newest if newest > self.newest else self.newest  # as in `observe_all`

    def v(self, name: str, default: float = math.nan) -> float:
        """A tag's value as a number, or `default` when there is none."""
        # A subscript, not `dict.get` (a method call): some thirty a decision, and every tag
        # is there but before the first snapshot (measured, with `Conditions`' alike: the
        # closed loop's instructions a plant second 685,200 -> 680,100)
        try:
            value = self.raw[name][0]
        except KeyError:
            return default
        return default if value is None else float(value)

    def has(self, name: str) -> bool:
        return name in self.raw
