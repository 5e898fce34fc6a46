"""Capped exponential backoff: the one retry schedule of every reconnect and retry loop.

    backoff = Backoff(initial_s=0.5, max_s=10.0)
    while ...:
        try: ...; backoff.reset()
        except SomeError: wait(backoff.next())     # 0.5, 1, 2, 4, 8, 10, 10, ...

Plain Python and no clock: the caller waits (`threading.Event.wait`, `asyncio.sleep`), so the
schedule is tested without waiting. Jitter, where a loop wants it, is the caller's (the
delivery runner draws its wait between half and all of the step: `half_jitter`).
"""

from __future__ import annotations

from collections.abc import Callable


class Backoff:
    """Delays that start at `initial_s`, double after each failure and stay at `max_s`.

    Args:
        initial_s: the first delay, seconds (> 0).
        max_s: the cap, seconds: every delay after the first is at most this.
    """

    def __init__(self, initial_s: float, max_s: float) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self._next = initial_s

    @property
    def upcoming(self) -> float:
        """The delay the next `next()` returns."""
        return self._next

    def next(self) -> float:
        """The delay to wait now; the one after it is twice as long, up to the cap."""
        delay = self._next
        self._next = min(delay * 2, self.max_s)
        return delay

    def reset(self) -> None:
        """After a success: the next failure waits `initial_s` again."""
        self._next = self.initial_s


def half_jitter(delay: float, uniform: Callable[[float, float], float]) -> float:
    """A delay drawn between half of `delay` and all of it (`uniform` is e.g. random.uniform),
    so that clients that lost the same server do not all come back in the same instant."""
    return uniform(delay / 2, delay)
