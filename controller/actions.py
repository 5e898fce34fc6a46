"""What the controller asks of the plant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Action:
    """A command the controller wants sent: a setpoint write, a line command or a quarantine.

    A quarantine flags in genealogy the tablets pressed in a window: its value is the window
    (start, end) in the telemetry's time (the source times `step` is given).
    """

    kind: str  # "setpoint", "line" or "quarantine"
    target: str  # tag id, the line command (start, stop, abort, reset), or "genealogy"
    value: Any
    reason: str
