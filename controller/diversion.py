"""RTD-based diversion: reject exactly the predicted non-conforming window, plus a margin."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Window:
    """A span of press time whose tablets must go to reject, and why."""

    start: float
    end: float
    reason: str


class DiversionPlanner:
    """Collects predicted out-of-spec arrivals at the press and merges them into windows."""

    def __init__(self, margin_s: float, lead_s: float) -> None:
        self.margin_s, self.lead_s = margin_s, lead_s
        self.windows: list[Window] = []

    def flag(self, press_time: float, reason: str, margin_s: float | None = None) -> None:
        """Material reaching the press at `press_time` is (predicted) out of spec."""
        margin = self.margin_s if margin_s is None else margin_s
        start, end = press_time - margin, press_time + margin
        for window in self.windows:
            if start <= window.end and end >= window.start:
                window.start, window.end = min(window.start, start), max(window.end, end)
                return
        self.windows.append(Window(start, end, reason))
        self.windows.sort(key=lambda w: w.start)

    def flag_span(self, start: float, end: float, reason: str) -> None:
        """Everything reaching the press from `start` to `end` is (predicted) out of spec."""
        self.flag(start, reason)
        self.flag(end, reason)
        for window in self.windows:
            if window.start <= start and window.end >= start:
                window.end = max(window.end, end + self.margin_s)
        merged: list[Window] = []
        for window in sorted(self.windows, key=lambda w: w.start):
            if merged and window.start <= merged[-1].end:
                merged[-1].end = max(merged[-1].end, window.end)
            else:
                merged.append(window)
        self.windows = merged

    def active(self, now: float) -> Window | None:
        """The window the gate must serve now: already open, or opening within the lead."""
        self.windows = [w for w in self.windows if w.end >= now]
        for window in self.windows:
            if window.start - self.lead_s <= now:
                return window
        return None
