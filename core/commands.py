"""What the outside may ask of the twin, and what it answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

LineAction = Literal["start", "stop", "abort", "reset"]


@dataclass(frozen=True, slots=True)
class SetpointCommand:
    """Write a setpoint tag. `value` may be a state name for enumerated setpoints."""

    tag: str
    value: Any
    user: str = "operator"
    reason: str = ""


@dataclass(frozen=True, slots=True)
class LineCommand:
    """Start, stop (run dry), abort (emergency stop) or reset the line."""

    action: LineAction
    user: str = "operator"
    reason: str = ""


QUARANTINE_MAX_S = 3600.0  # longest press-time window one quarantine may flag, s


@dataclass(frozen=True, slots=True)
class QuarantineCommand:
    """Flag in genealogy the tablets pressed in plant time [start_s, end_s] (fault 13's response).

    Accepted tablets of the window are held back (quarantined), not released. The window must
    be ordered, at most `QUARANTINE_MAX_S` long, and over: its end may lie in the future only
    while the press makes no tablets (after an abort), and is then cut at the present.
    """

    start_s: float
    end_s: float
    user: str = "operator"
    reason: str = ""


Command = SetpointCommand | LineCommand | QuarantineCommand


@dataclass(frozen=True, slots=True)
class CommandResult:
    """Whether a command was carried out; when rejected, `reason` says why.

    `code` says the same for programs: "accepted", or the kind of rejection: "unknown_tag",
    "not_writable", "type", "range", "state" or "unknown_command". For a quarantine,
    `new` is the window flagged and what it held back: {"start_s", "end_s", "tablets"}.
    """

    accepted: bool
    reason: str
    time: float
    old: Any = None
    new: Any = None
    code: str = "accepted"
