"""Estimators: what the controller believes about the blend, from telemetry alone."""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from statistics import median


class RobustNir:
    """Median of the last few good spectra, with spikes, steps and stale readings set aside.

    A reading counts once (new source time) and only with Good quality. One that jumps more
    than `spike_pct` from the running median is set aside: blend concentration cannot jump
    between two spectra, because the blender's RTD smooths every real change. Several set-aside
    readings that agree with each other are a *step*: the probe's calibration moved, not the
    blend (fouling, a bias). The estimator then follows the new level and reports the step.
    """

    def __init__(
        self,
        window: int = 3,
        spike_pct: float = 0.5,
        stale_s: float = 8.0,
        step_count: int = 4,
        restart_s: float = 60.0,
        gap_spectra: float = 1.5,
    ) -> None:
        """The defaults are `ControllerConfig`'s, where each is explained."""
        self.window, self.spike_pct, self.stale_s = window, spike_pct, stale_s
        self.restart_s = restart_s  # no good spectrum for this long: start afresh
        self.gap_spectra = gap_spectra  # periods between readings that mean spectra were lost
        self.step_count = step_count
        self._recent: deque[float] = deque(maxlen=window)
        self._median: float | None = None  # of `_recent`, until it changes
        self._outliers: deque[float] = deque(maxlen=step_count)
        self._residuals: deque[float] = deque(maxlen=60)
        self._noise_sd: float | None = None  # of the residuals, until the next one
        self._squares = 0.0  # running sum of the residuals' squares: a bound on their spread
        self._quality: deque[bool] = deque(maxlen=60)
        self._good = 0  # good readings among `_quality`, kept as they come and go
        self._last_time = -math.inf
        self.last_good = -math.inf
        # A step whose set-aside readings a quiet spell cut short: (the median they were set
        # aside against, those readings and the ones since that agree with them)
        self._interrupted: tuple[float, deque[float]] | None = None
        self._interrupted_left = 0  # readings it may still take to confirm it
        self.latest: float | None = None  # the newest accepted reading (no spike, no step)
        self.last_step: tuple[float, float] | None = None  # (time, size in % w/w)

    MAX_GAP_SPECTRA = 10  # a longer gap is a stopped line or a lost link, not lost spectra

    def update(
        self,
        value: float,
        good: bool,
        source_time: float,
        expected_move: float = 0.0,
        period_s: float = 0.0,
    ) -> None:
        """Take one reading; `expected_move` (% w/w) is how far the blend may have moved since
        the last one by what the feeders say, which widens the spike test while it is moving.
        `period_s` (s between spectra), when given, counts the spectra a gap in source times
        skipped as lost; give it only when telemetry shows every spectrum."""
        if source_time <= self._last_time:
            return
        gap = source_time - self._last_time  # inf before the first reading
        if period_s and self.gap_spectra * period_s < gap < math.inf:
            # Spectra lost without a trace (the probe left its last value, and its source time,
            # standing): seen only as the gap, when telemetry comes faster than the spectra.
            missing = round(gap / period_s) - 1
            if missing <= self.MAX_GAP_SPECTRA:
                for _ in range(missing):
                    self._note(False)
        self._last_time = source_time
        if not good:
            self._note(False)
            return
        if source_time - self.last_good > self.restart_s:
            # The probe saw nothing for a while (a stopped line): the blend it sees now is not
            # a step from the one it saw before. But readings set aside before the quiet spell
            # were a step begun: under heavy dropout a step's spectra come a quarter-minute
            # apart or more, and a restart took the step's next spectrum for a fresh start, the
            # step unreported (random campaign 6 compound: a +3.4 % w/w bias under 85 %
            # dropout; judged by the worse of probe and feeders until the fail-safe stopped
            # the line, 5.0 kg of good tablets diverted). The readings after the restart that
            # agree with them confirm it as the set-aside ones would have.
            begun = (
                (self._centre(), deque(self._outliers, maxlen=self.step_count))
                if self._outliers and len(self._recent) == self.window
                else None
            )
            self.restart()
            self._interrupted, self._interrupted_left = begun, 2 * self.step_count
        if self._interrupted is not None:
            self._confirm_interrupted_step(value, source_time)
        if len(self._recent) == self.window:
            centre = self._centre()
            if abs(value - centre) > self.spike_pct + abs(expected_move):
                self._note(False)
                self._outliers.append(value)
                if len(self._outliers) == self.step_count and (
                    max(self._outliers) - min(self._outliers) < self.spike_pct / 2
                ):
                    self.last_step = (source_time, median(self._outliers) - centre)
                    self._recent.clear()
                    self._recent.extend(list(self._outliers)[-self.window :])
                    self._median = None
                    self._outliers.clear()
                    self.latest = self._recent[-1]
                    self.last_good = source_time
                return
            residuals, residual = self._residuals, value - centre
            if len(residuals) == residuals.maxlen:
                self._squares -= residuals[0] * residuals[0]
            residuals.append(residual)
            self._squares += residual * residual
            self._noise_sd = None
        self._outliers.clear()
        self._note(True)
        self._recent.append(value)
        self._median = None
        self.latest = value
        self.last_good = source_time

    def restart(self) -> None:
        """Start afresh: the next good reading is not compared with the ones before."""
        self.latest = None
        self._recent.clear()
        self._median = None
        self._outliers.clear()
        self._interrupted = None

    def _confirm_interrupted_step(self, value: float, source_time: float) -> None:
        """A reading after a quiet spell that cut a step short: the last `step_count`
        readings, set-aside ones and these, agreeing within half the spike width, as the
        set-aside ones must, are the step. A reading back within the spike width of where
        the step began says those were spikes; a few more readings, that it was no step."""
        assert self._interrupted is not None
        centre, readings = self._interrupted
        readings.append(value)
        self._interrupted_left -= 1
        if abs(value - centre) <= self.spike_pct or self._interrupted_left < 0:
            self._interrupted = None  # a fresh start after all
        elif (
            len(readings) == self.step_count and max(readings) - min(readings) < self.spike_pct / 2
        ):
            self.last_step = (source_time, median(readings) - centre)
            self._interrupted = None

    def _note(self, ok: bool) -> None:
        quality = self._quality
        if len(quality) == quality.maxlen and quality[0]:
            self._good -= 1
        quality.append(ok)
        self._good += ok

    def estimate(self, now: float) -> float | None:
        """The blend concentration (% w/w), or None when the probe has gone quiet."""
        if not self._recent or now - self.last_good > self.stale_s:
            return None
        return self._centre()

    def _centre(self) -> float:
        """The median of the recent readings (worked out once per new reading: the blend is
        judged every decision, spectra come every two seconds)."""
        if self._median is None:
            self._median = median(self._recent)
        return self._median

    @property
    def bad_fraction(self) -> float:
        """Share of the last spectra that were lost, flagged or spiky."""
        if len(self._quality) < 20:
            return 0.0
        return 1.0 - self._good / len(self._quality)

    def spread_over(self, limit: float) -> float:
        """`noise_sd` when it may exceed `limit`, else 0.0: the residuals' mean square bounds
        their spread from above, and it is kept as they come (the spread itself, worked out
        over sixty residuals at each new spectrum, cost 4 % of the controller's time)."""
        n = len(self._residuals)
        if n >= 10 and self._squares / (n - 1) <= limit * limit * (1.0 - 1e-6):
            return 0.0
        return self.noise_sd

    @property
    def noise_sd(self) -> float:
        """Spread of accepted readings around their running median, % w/w (worked out once
        per new residual: the guard band asks for it every decision)."""
        if self._noise_sd is None:
            residuals = self._residuals
            if len(residuals) < 10:
                self._noise_sd = 0.0
            else:
                mean = sum(residuals, 0.0) / len(residuals)
                squares = sum([(r - mean) ** 2 for r in residuals], 0.0)
                self._noise_sd = math.sqrt(squares / (len(residuals) - 1))
        return self._noise_sd


class FeedFactorCurve:
    """A loss-in-weight feeder's feed factor against its hopper mass: a straight line by
    least squares, each reading weighed down by its age (time constant `time_constant_s`).

    The feed factor falls as the hopper empties (the powder's head presses less), about 5 %
    over a refill cycle of the API feeder: as much as a drift worth an alarm, which a long-run
    average of the feed factor cannot tell from one. Against the line at the hopper mass now,
    the learnt feed factor of a healthy feeder stays within 2 %. Until the hopper has spanned
    `min_span_kg` (an SD of its mass) the line is flat: the weighted mean.
    """

    def __init__(self, time_constant_s: float, min_span_kg: float) -> None:
        self.tc, self.min_span_kg = time_constant_s, min_span_kg
        self._sums = [0.0] * 5  # weighted 1, x, y, x*x, x*y
        self._dt = math.nan
        self._keep = 1.0

    def update(self, hopper_kg: float, feed_factor: float, dt: float) -> None:
        if dt != self._dt:
            self._dt, self._keep = dt, math.exp(-dt / self.tc)
        keep, new = self._keep, 1.0 - self._keep
        x, y, sums = hopper_kg, feed_factor, self._sums
        sums[0] = sums[0] * keep + 1.0 * new
        sums[1] = sums[1] * keep + x * new
        sums[2] = sums[2] * keep + y * new
        sums[3] = sums[3] * keep + x * x * new
        sums[4] = sums[4] * keep + x * y * new

    def at(self, hopper_kg: float) -> float | None:
        """The feed factor the line expects at this hopper mass; None before any reading."""
        w, sx, sy, sxx, sxy = self._sums
        if w <= 0.0:
            return None
        mean_x, mean_y = sx / w, sy / w
        var_x = sxx / w - mean_x * mean_x
        slope = (sxy / w - mean_x * mean_y) / var_x if var_x > self.min_span_kg**2 else 0.0
        return mean_y + slope * (hopper_kg - mean_x)


class RtdPredictor:
    """The feeders' API ratio passed through the blender's RTD: n first-order lags in series.

    With the mean residence time from the blender's own hold-up and throughput, this predicts
    the concentration leaving the blender before any spectrum shows it.
    """

    def __init__(self, tanks: int) -> None:
        self.stages: list[float] = []
        self.tanks = tanks

    def update(self, ratio_pct: float, mean_residence_s: float, dt: float) -> float:
        if not self.stages:
            self.stages = [ratio_pct] * self.tanks
        per_tank = mean_residence_s / self.tanks
        # max(per_tank, 1e-3), by comparison: every decision (Supervisor.step says why)
        keep = math.exp(-dt / (1e-3 if per_tank < 1e-3 else per_tank))
        upstream, stages = ratio_pct, self.stages
        for i, value in enumerate(stages):
            upstream = stages[i] = upstream + (value - upstream) * keep
        return stages[-1]

    def shift(self, by_pct: float) -> None:
        """Move the whole blender's content by `by_pct` % w/w: its feed was misreported."""
        self.stages = [value + by_pct for value in self.stages]

    @property
    def value(self) -> float | None:
        return self.stages[-1] if self.stages else None


def arrival_time(now: float, level_kg: float, draw_kg_s: float) -> float | None:
    """When powder leaving the blender now reaches the dies: the feed frame is plug flow."""
    if draw_kg_s <= 0.0:
        return None
    return now + level_kg / draw_kg_s


def content_pct(weight_mg: float, concentration_pct: float, label_claim_mg: float) -> float:
    """API content of a tablet, % of label claim."""
    return weight_mg * concentration_pct / label_claim_mg


class Ewma:
    """Exponentially weighted mean with a time constant."""

    def __init__(self, time_constant_s: float) -> None:
        self.tc = time_constant_s
        self.value: float | None = None
        self._dt = math.nan  # the step the weight below is for: steps are mostly alike
        self._weight = 0.0

    def update(self, x: float, dt: float) -> float:
        if self.value is None:
            self.value = x
        else:
            if dt != self._dt:
                self._dt, self._weight = dt, 1.0 - math.exp(-dt / self.tc)
            self.value += (x - self.value) * self._weight
        return self.value


#: Median of |z| for a standard normal z: a median absolute value over this is an SD.
MEDIAN_ABS_NORMAL = 0.6745


class RobustSpread:
    """Spread about zero of the values of the last `span_s` seconds, from their median
    absolute value.

    For Gaussian noise it reads as its SD. A step or a transient that fills less than half the
    window hardly moves it, where it inflates an SD: a feeder relearning its feed factor after
    a density change or a drift's end moves its flow for a minute, which is no noise. The
    window is plant time, not a count: telemetry every 2.5 plant s would stretch 300 values
    over 750 s, and a 5-min noise could never fill half of it (the acceptance run at 50x).
    Constant time per value but for the sorted list's shift (a C-level move).
    """

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self.values: deque[tuple[float, float]] = deque()  # (time, absolute value), oldest first
        self._sorted: list[float] = []

    def append(self, x: float, time: float) -> None:
        values, ordered = self.values, self._sorted
        while values and values[0][0] <= time - self.span_s:
            del ordered[bisect_left(ordered, values.popleft()[1])]
        magnitude = abs(x)
        values.append((time, magnitude))
        insort(ordered, magnitude)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def sd(self) -> float:
        ordered = self._sorted
        n = len(ordered)
        if n < 2:
            return 0.0
        mid = n // 2
        median_abs = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        return median_abs / MEDIAN_ABS_NORMAL


class SlidingRange:
    """Lowest and highest of the last `size` values, in constant time per value (the
    ascending and descending minima queues)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._count = 0
        self._lows: deque[tuple[int, float]] = deque()  # (index, value), values ascending
        self._highs: deque[tuple[int, float]] = deque()  # values descending

    def append(self, x: float) -> None:
        i, lows, highs = self._count, self._lows, self._highs
        self._count = i + 1
        while lows and lows[-1][1] >= x:
            lows.pop()
        lows.append((i, x))
        while highs and highs[-1][1] <= x:
            highs.pop()
        highs.append((i, x))
        oldest = i - self.size + 1
        if lows[0][0] < oldest:
            lows.popleft()
        if highs[0][0] < oldest:
            highs.popleft()

    def clear(self) -> None:
        self._lows.clear()
        self._highs.clear()

    @property
    def low(self) -> float:
        return self._lows[0][1] if self._lows else math.nan

    @property
    def high(self) -> float:
        return self._highs[0][1] if self._highs else math.nan
