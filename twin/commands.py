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


Command = SetpointCommand | LineCommand


@dataclass(frozen=True, slots=True)
class CommandResult:
    """Whether a command was carried out; when rejected, `reason` says why.

    `code` says the same for programs: "accepted", or the kind of rejection: "unknown_tag",
    "not_writable", "type", "range", "state" or "unknown_command".
    """

    accepted: bool
    reason: str
    time: float
    old: Any = None
    new: Any = None
    code: str = "accepted"
