"""Debounced conditions and the alarms they raise and clear."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Alarm:
    """A detection, raised or cleared. `name` is the fault kind the controller believes in."""

    time: float
    name: str
    raised: bool
    message: str


@dataclass(slots=True)
class Condition:
    """A detector's debounced state."""

    since: float | None = None
    active: bool = False
    raised_at: float = field(default=-math.inf)
    cleared_at: float = field(default=-math.inf)

    def moved_by(self, present: bool) -> bool:
        """Whether `Conditions.update` with this signal would do anything: not when the signal
        is absent, the condition inactive and not on its way to change. A detector that keeps
        its condition (`Conditions.watch`) asks first, and skips the update and the message it
        would word (nearly all of the dozen a decision)."""
        return present or self.active or self.since is not None


INACTIVE = Condition()  # what a condition never yet evaluated reads as (do not change it)


class Conditions:
    """Every detector's debounced state, by name, and the alarms not yet taken.

    A name may carry a qualifier after a colon (one per feeder, `feeder_noise:api_feeder`); the
    alarm's name is the part before it, the fault kind it points at.
    """

    def __init__(self) -> None:
        self.items: dict[str, Condition] = {}
        self.alarms: list[Alarm] = []
        # kind -> how many of its conditions are active, kept as they are raised and cleared
        # (`any_active` without a look at each: measured 4,400 instructions a decision fewer)
        self._active_count: dict[str, int] = {}
        # Alarm names whose last word was "raised", conditions' and one-off alarms' alike (what
        # is left standing when this run of the plant is over: `TelemetryFeed`)
        self.standing: set[str] = set()

    def get(self, name: str) -> Condition:
        """The condition's state; an inactive one when it has never been evaluated."""
        # (A subscript, not `dict.get`, here and below: as in `Telemetry.v`, which says why.)
        try:
            return self.items[name]
        except KeyError:
            return INACTIVE

    def active(self, name: str) -> bool:
        try:
            return self.items[name].active  # (not through get: a dozen a decision)
        except KeyError:
            return INACTIVE.active

    def watch(self, name: str) -> Condition:
        """The condition `name` itself, inactive if never evaluated (it is never replaced): a
        detector keeps it to skip an update that could change nothing, its signal absent while
        the condition is inactive and not on its way to change (`since` None). Nearly all of
        them, every decision; with the message each would word (measured: the closed loop's
        instructions a plant second 673,700 -> 647,600)."""
        try:
            return self.items[name]
        except KeyError:
            cond = self.items[name] = Condition()
            return cond

    def any_active(self, kind: str) -> bool:
        """Whether any condition of this kind (any qualifier) is active."""
        return self._active_count.get(kind, 0) > 0

    def alarm(self, now: float, key: str, raised: bool, message: str) -> None:
        name = key.split(":", maxsplit=1)[0]
        self.alarms.append(Alarm(now, name, raised, message))
        if raised:
            self.standing.add(name)
        else:
            self.standing.discard(name)

    def update(
        self,
        now: float,
        name: str,
        present: bool,
        delay_s: float,
        message: str | Callable[[], str],
        clear_message: str = "",
    ) -> bool:
        """Debounce a detector: raise after `delay_s` present, clear after `delay_s` absent.

        `message` may be a function that words it: worked out only when the alarm is raised."""
        try:
            cond = self.items[name]
        except KeyError:
            cond = self.items[name] = Condition()
        if present != cond.active:
            if cond.since is None:
                cond.since = now
            if now - cond.since >= delay_s:
                was, cond.active, cond.since = cond.active, present, None
                kind, counts = name.split(":", maxsplit=1)[0], self._active_count
                counts[kind] = counts.get(kind, 0) + bool(present) - bool(was)
                if present:
                    cond.raised_at = now
                    text = message if isinstance(message, str) else message()
                else:
                    cond.cleared_at = now
                    text = clear_message or f"{name} cleared"
                self.alarm(now, name, present, text)
        else:
            cond.since = None
        return cond.active

    def hold(self, name: str, dt: float) -> None:
        """Stop a pending change's debounce clock for `dt`: time in which its detector's measure
        can neither confirm nor refute it (`Density` while the line diverts) counts for neither,
        so that the change is made on `delay_s` of evidence, gathered in pieces."""
        cond = self.items.get(name)
        if cond is not None and cond.since is not None:
            cond.since += dt

    def take(self) -> list[Alarm]:
        alarms, self.alarms = self.alarms, []
        return alarms
