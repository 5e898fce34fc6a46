"""Where a tablet reading heads: the straight line through its last few plant seconds.

The gate diverts on the weight and the hardness the tablets will have a reaction time from
now, not only on the mean of the last ten, which trails a ramp (a density step's, the
hardness a heavier tablet brings at a fixed gap) by several seconds.
"""

from __future__ import annotations

import math
from collections import deque


class Trend:
    """(source time, value) readings of the last `span_s` plant seconds, and at least
    `min_readings` of them however far apart they come; fitted only when asked."""

    def __init__(self, span_s: float, min_readings: int, sigmas: float) -> None:
        self.span_s = span_s
        self.min_readings = min_readings
        self.sigmas = sigmas
        self.readings: deque[tuple[float, float]] = deque()

    def follow(self, time: float, value: float, interval_s: float) -> None:
        """Add a reading (the same one again is ignored); `interval_s` is telemetry's."""
        readings = self.readings
        if readings and time <= readings[-1][0]:
            return
        readings.append((time, value))
        least, enough = self.span_s, self.min_readings * interval_s
        span = enough if enough > least else least  # max(least, enough): see Supervisor.step
        while readings[0][0] < time - span:
            readings.popleft()

    def clear(self) -> None:
        self.readings.clear()

    def projected(self, horizon_s: float, target: float) -> float | None:
        """The value `horizon_s` plant seconds after the newest reading on the straight line
        through the readings, when it heads away from `target` by more than its own noise
        (the rise over the horizon beats the slope's standard error over it `sigmas` times);
        else None."""
        readings = self.readings
        n = len(readings)
        if n < self.min_readings:
            return None
        t_mean = sum((t for t, _ in readings), 0.0) / n
        v_mean = sum((v for _, v in readings), 0.0) / n
        stt = sum(((t - t_mean) ** 2 for t, _ in readings), 0.0)
        if stt <= 0.0:
            return None
        slope = sum(((t - t_mean) * (v - v_mean) for t, v in readings), 0.0) / stt
        now_v = v_mean + slope * (readings[-1][0] - t_mean)
        residual = math.sqrt(
            sum(((v - v_mean - slope * (t - t_mean)) ** 2 for t, v in readings), 0.0)
            / max(n - 2, 1)
        )
        rise = slope * horizon_s
        if abs(rise) < self.sigmas * residual / math.sqrt(stt) * horizon_s:
            return None
        if (now_v - target) * rise < 0:
            return None  # coming back toward target: the loop is working
        return now_v + rise
