"""Telemetry in, decisions out: the transport-free half of the controller's MQTT adapter.

The supervisor's clock is the telemetry's source time (plant time, seconds: `source_ns / 1e9`),
as in `apps.closed_loop`, where it observes every tag up to a second and then decides. Over
MQTT the modules of one second arrive as separate batches, possibly out of order and possibly
twice (QoS 1), so the feed:

- observes samples in source-time order and drops any not newer than what it has of that tag
  (a duplicate or a late replay must not overwrite a newer reading);
- decides (`Supervisor.step`) once per new second of telemetry: when a later second starts, or
  when the service says the burst is over (`flush`);
- says how far behind the plant each decision is (`Supervisor.behind_s`): the plant's clock
  runs on from the freshest telemetry's arrival at the telemetry's own speed, so a burst of
  old seconds after a stall (the machine's neighbours took the CPU) is decided as late as it is;
- follows a plant that restarted: its source times begin again from its new start, behind
  what the old run reached (at 50x, hours behind). Telemetry that runs on for `stale_after_s`
  entirely behind what was seen is a restarted plant, followed afresh with a new supervisor;
  old samples that do not run on are a replay, dropped;
- watches the wall clock: when no new telemetry has arrived for `stale_after_s`, the plant has
  gone quiet for the controller (fault 14). Its plant clock stopped with the telemetry, so the
  feed steps the supervisor at an extrapolated plant time, at least past the supervisor's own
  staleness limit, and the supervisor holds and raises `stale_telemetry`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from controller.supervisor import Action, Alarm, Supervisor
from core.payload import Sample, Scalar, TelemetryBatch
from core.tags import TEMPLATES

#: State names of enumerated tags by tag name, for an edge that sends names instead of indices.
ENUM_STATES: dict[str, tuple[str, ...]] = {
    spec.name: spec.states for specs in TEMPLATES.values() for spec in specs if spec.states
}


@dataclass(frozen=True, slots=True)
class Decision:
    """What the supervisor decided at plant time `time` (s), and the alarms it changed."""

    time: float
    actions: list[Action] = field(default_factory=list)
    alarms: list[Alarm] = field(default_factory=list)
    stale: bool = False  # decided on the wall clock, with no fresh telemetry
    behind_s: float = 0.0  # how far behind the plant it was decided (`Supervisor.behind_s`)
    error: str = ""  # the supervisor failed on this step: it held (nothing sent)


def plant_seconds(source_ns: int) -> float:
    """The supervisor's time of a sample: its source time in seconds."""
    return source_ns / 1e9


def observed_value(tag: str, value: Scalar) -> Any:
    """A sample value as the supervisor reads it (numbers, state indices, NaN for no value).

    A value it cannot use (a name that is no state of the tag, an integer beyond any float)
    is no value.
    """
    name = tag.rpartition(".")[2]
    observed: Any = value
    if isinstance(value, str):
        states = ENUM_STATES.get(name, ())
        observed = states.index(value) if value in states else None
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:
            observed = None
    if observed is None and tag.endswith("nir.api_pct"):
        # The NIR estimator takes a number even for a Bad spectrum (it skips it by quality);
        # OPC UA publishes Bad values as null.
        return math.nan
    return observed


class TelemetryFeed:
    """Feeds telemetry batches to a supervisor and says when it decided what.

    Args:
        supervisor: the controller.
        stale_after_s: wall seconds without telemetry that mean the link is lost.
    """

    def __init__(self, supervisor: Supervisor, stale_after_s: float) -> None:
        self.supervisor = supervisor
        self.stale_after_s = stale_after_s
        self.samples = 0  # samples observed
        self.dropped = 0  # duplicates and late samples set aside
        self.rejected = 0  # samples the supervisor could not take (an error, not a crash)
        self.last_rejection = ""  # why the last one was rejected
        self.newest = -math.inf  # newest source time seen, plant s
        self.stale = False
        self.restarts = 0  # times the plant was found restarted and followed afresh
        self._seen: dict[str, float] = {}  # tag -> newest source time observed
        self._second: int | None = None  # the open second (floor of its source time)
        self._second_time = -math.inf  # newest source time in the open second
        self._decided = -math.inf  # plant time of the last decision
        self._arrival: float | None = None  # wall time of the last telemetry
        self._flow_start: tuple[float, float] | None = None  # (wall, plant) when it started
        self._speed = 1.0  # plant seconds per wall second, from the telemetry itself
        # (wall, plant) of the freshest-looking arrival: the plant's clock runs on from it.
        self._clock: tuple[float, float] | None = None
        self._wall = 0.0  # wall time of the arrival being worked through
        # (wall, source time) of the first of a run of arrivals with nothing newer than what was
        # seen: a restarted plant, or a replay (`_went_back`).
        self._behind_since: tuple[float, float] | None = None

    @property
    def enabled(self) -> bool:
        return self.supervisor.enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self.supervisor.enabled = value

    @property
    def speed(self) -> float:
        """Plant seconds per wall second, as the telemetry's own clock says."""
        return self._speed

    def take(self, batches: Iterable[TelemetryBatch], wall: float) -> list[Decision]:
        """Observe batches that arrived together at wall time `wall`; decide each second that
        is complete now."""
        decisions: list[Decision] = []
        samples = sorted((s for b in batches for s in b.samples), key=lambda s: s.source_ns)
        if not samples:
            return decisions
        if self.stale:
            # The extrapolated times of the hold were guesses; the telemetry's clock rules again.
            self._decided = -math.inf
        self._wall = wall
        freshest = plant_seconds(samples[-1].source_ns)
        if self._clock is None or freshest > self.plant_now(wall):
            self._clock = (wall, freshest)
        dropped = self.dropped
        for sample in samples:
            t = plant_seconds(sample.source_ns)
            second = math.floor(t)
            if self._second is not None and second > self._second:
                decision = self._decide_open_second()
                if decision is not None:
                    decisions.append(decision)
            self._observe(sample, t)
            if self._second is None or second >= self._second:
                self._second = second
                self._second_time = max(self._second_time, t)
        if self.dropped - dropped < len(samples):  # something new: the plant is heard
            self._behind_since = None
            self._arrived(wall)
        elif self._went_back(samples[-1], wall):
            self._follow_restarted_plant(freshest)
            return self.take(batches, wall)
        return decisions

    def plant_now(self, wall: float) -> float:
        """The plant's time at wall time `wall`, as the telemetry's clock says (-inf before any)."""
        if self._clock is None:
            return -math.inf
        wall0, plant0 = self._clock
        return plant0 + (wall - wall0) * self._speed

    def flush(self) -> Decision | None:
        """Decide the open second now (the burst it came in is over)."""
        return self._decide_open_second()

    def check_stale(self, wall: float) -> Decision | None:
        """Step the supervisor on the wall clock when telemetry has stopped coming."""
        if self._arrival is None or wall - self._arrival < self.stale_after_s:
            return None
        self.stale = True
        self._flow_start = self._clock = None
        limit = self.supervisor.cfg.stale_telemetry_s + 1.0
        now = self.newest + max((wall - self._arrival) * self._speed, limit)
        # Each check is a later plant time, so the supervisor's clock never runs backwards.
        now = max(now, self._decided + 1.0)
        return self._step(now, stale=True)

    # Internals ---------------------------------------------------------------------------------
    def _went_back(self, freshest_sample: Sample, wall: float) -> bool:
        """Whether the plant restarted, given an arrival with nothing newer than what was seen
        of its tags: so has every one for `stale_after_s` before it, while its source times ran
        on (a replay of old telemetry does not run on)."""
        freshest = plant_seconds(freshest_sample.source_ns)
        if self._behind_since is None:
            self._behind_since = (wall, freshest)
            return False
        since, first = self._behind_since
        return wall - since >= self.stale_after_s and freshest > first

    def _follow_restarted_plant(self, now: float) -> None:
        """Start afresh on a restarted plant (`now`: its newest source time): what the
        supervisor knew (its averages, alarms, gate and timers, all in the old run's plant time)
        belongs to another run. The alarms the old run left raised are cleared with the first
        decision on the new one: nothing would ever clear them (a diagnosis of the old run is
        no news of the new)."""
        old = self.supervisor
        self.supervisor = type(old)(old.cfg, enabled=old.enabled)
        for name in sorted(old.conds.standing):
            self.supervisor.conds.alarm(
                now, name, False, "the plant restarted: its last run's diagnosis no longer holds"
            )
        self.restarts += 1
        self.newest = -math.inf
        self._seen.clear()
        self._second, self._second_time, self._decided = None, -math.inf, -math.inf
        self._arrival = self._flow_start = self._clock = self._behind_since = None
        self.stale = False

    def _observe(self, sample: Sample, t: float) -> None:
        if t <= self._seen.get(sample.tag, -math.inf):
            self.dropped += 1
            return
        try:
            self.supervisor.observe(
                sample.tag, observed_value(sample.tag, sample.value), sample.quality, t
            )
        except Exception as error:  # one odd sample must not lose the rest of its second
            self.rejected += 1
            self.last_rejection = f"{sample.tag}: {type(error).__name__}: {error}"
            return
        self._seen[sample.tag] = t
        self.newest = max(self.newest, t)
        self.samples += 1

    def _decide_open_second(self) -> Decision | None:
        if self._second is None or self._second_time <= self._decided:
            return None
        return self._step(self._second_time, stale=False)

    def _step(self, now: float, *, stale: bool) -> Decision:
        self._decided = max(self._decided, now)
        behind = 0.0 if stale else self.plant_now(self._wall) - now
        behind = behind if behind > 0.0 else 0.0
        self.supervisor.behind_s = behind
        try:
            actions = self.supervisor.step(now)
        except Exception as error:
            # Telemetry a real plant can send (a starved press weighs 0 mg) must not take the
            # controller down: this second it holds, and the service says why.
            why = f"{type(error).__name__}: {error}"
            return Decision(
                time=now,
                actions=[],
                alarms=self.supervisor.take_alarms(),
                stale=stale,
                error=why,
                behind_s=behind,
            )
        return Decision(now, actions, self.supervisor.take_alarms(), stale, behind_s=behind)

    def _arrived(self, wall: float) -> None:
        if self._flow_start is None:
            self._flow_start = (wall, self.newest)
        else:
            wall0, plant0 = self._flow_start
            if wall - wall0 >= 2.0:  # long enough to measure the plant's speed factor
                self._speed = max((self.newest - plant0) / (wall - wall0), 0.01)
        self._arrival = wall
        self.stale = False
