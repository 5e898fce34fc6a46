"""A fault the twin has accepted (the catalogue and fault requests are `core.faults`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ActiveFault:
    """A fault the twin has accepted: pending (before onset), active, or ended."""

    id: int
    kind: str
    target: str
    magnitude: float
    onset_s: float
    duration_s: float
    user: str
    status: str = "pending"  # pending, active, ended
    ended_s: float | None = None
