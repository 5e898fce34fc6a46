"""Ground truth: what was really made, and where it went. For scoring, never for control.

Tablets that reached the accept bin can still be held back: a quarantine (a press-time window
flagged in genealogy, e.g. after a stuck diverter) moves the accepted slices of the window to a
quarantined state. They are then neither accepted nor released; the accepted totals, and the
OOS accepted ones, count only what is released.
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple


class TabletSlice(NamedTuple):
    """One press step's tablets: their true quality and their fate."""

    time: float
    press: str
    tablets: float
    mass_kg: float
    weight_mg: float
    content_pct: float  # true API content, % of label claim
    hardness_n: float
    oos: bool
    diverted: bool
    forced: bool = False  # diverted because the line held the gate (start-up, stop, trip)
    quarantined: bool = False  # reached accept, then held back by a quarantine (not released)


class Quarantined(NamedTuple):
    """What one quarantine moved out of the accepted totals, per press."""

    tablets: float
    mass_kg: float
    oos_tablets: float
    oos_mass_kg: float


class QuarantineError(ValueError):
    """A window the ledger cannot flag in full (it no longer keeps all of its slices)."""


class Ledger:
    """Running totals of the material balance and of quality, plus recent slices.

    `slices` keeps the most recent `keep` slices (all of them when `keep` is None): a
    quarantine can flag only tablets whose slices are still kept, so a window that reaches
    back beyond them is refused as a whole (`QuarantineError`) rather than flagged in part.
    """

    def __init__(self, keep: int | None = 3600) -> None:
        self.fed_kg: dict[str, float] = {}
        self.tablets_made = 0.0
        self.tablets_accepted = 0.0
        self.tablets_diverted = 0.0
        self.mass_accepted = 0.0
        self.mass_diverted = 0.0
        self.mass_diverted_forced = 0.0
        self.mass_cleaned_out = 0.0  # powder an operator removed from an overfull feed frame
        self.oos_tablets = 0.0
        self.oos_mass = 0.0
        self.oos_accepted_tablets = 0.0
        self.oos_accepted_mass = 0.0
        self.oos_diverted_mass = 0.0
        self.tablets_quarantined = 0.0
        self.mass_quarantined = 0.0
        self.oos_quarantined_tablets = 0.0
        self.oos_quarantined_mass = 0.0
        self.forgotten_until = -math.inf  # press time of the newest slice no longer kept
        self.slices: deque[TabletSlice] = deque(maxlen=keep)

    def record(self, piece: TabletSlice) -> None:
        slices = self.slices
        if slices.maxlen is not None and len(slices) == slices.maxlen:
            self.forgotten_until = slices[0].time
        slices.append(piece)
        self.tablets_made += piece.tablets
        if piece.diverted:
            self.tablets_diverted += piece.tablets
            self.mass_diverted += piece.mass_kg
            if piece.forced:
                self.mass_diverted_forced += piece.mass_kg
        else:
            self.tablets_accepted += piece.tablets
            self.mass_accepted += piece.mass_kg
        if piece.oos:
            self.oos_tablets += piece.tablets
            self.oos_mass += piece.mass_kg
            if piece.diverted:
                self.oos_diverted_mass += piece.mass_kg
            else:
                self.oos_accepted_tablets += piece.tablets
                self.oos_accepted_mass += piece.mass_kg

    def quarantine(self, start: float, end: float) -> dict[str, Quarantined]:
        """Hold back the accepted tablets pressed in [start, end] (plant s); per press, what moved.

        Idempotent: a slice already quarantined (by an overlapping window) is not counted
        again, and diverted slices stay diverted. Raises `QuarantineError` when the window
        begins at or before a slice the ledger no longer keeps.
        """
        if start <= self.forgotten_until:
            raise QuarantineError(
                f"the ledger keeps tablets pressed after {self.forgotten_until:g} s only; "
                f"a window from {start:g} s cannot be flagged in full"
            )
        moved: dict[str, list[float]] = {}
        slices = self.slices
        # Newest first: the window is recent, so the walk stops early.
        for i in range(len(slices) - 1, -1, -1):
            piece = slices[i]
            if piece.time < start:
                break
            if piece.time > end or piece.diverted or piece.quarantined:
                continue
            slices[i] = piece._replace(quarantined=True)
            totals = moved.setdefault(piece.press, [0.0, 0.0, 0.0, 0.0])
            totals[0] += piece.tablets
            totals[1] += piece.mass_kg
            if piece.oos:
                totals[2] += piece.tablets
                totals[3] += piece.mass_kg
        for tablets, mass, oos_tablets, oos_mass in moved.values():
            self.tablets_accepted = _less(self.tablets_accepted, tablets)
            self.mass_accepted = _less(self.mass_accepted, mass)
            self.tablets_quarantined += tablets
            self.mass_quarantined += mass
            self.oos_accepted_tablets = _less(self.oos_accepted_tablets, oos_tablets)
            self.oos_accepted_mass = _less(self.oos_accepted_mass, oos_mass)
            self.oos_quarantined_tablets += oos_tablets
            self.oos_quarantined_mass += oos_mass
        return {press: Quarantined(*totals) for press, totals in moved.items()}

    @property
    def mass_diverted_on_command(self) -> float:
        """Mass diverted because someone asked (the controller, an operator), not the line."""
        return self.mass_diverted - self.mass_diverted_forced

    @property
    def total_fed_kg(self) -> float:
        return sum(self.fed_kg.values(), 0.0)

    @property
    def in_spec_pct(self) -> float:
        """Share of tablets made that were in spec, %."""
        if self.tablets_made == 0:
            return 0.0
        return 100.0 * (1.0 - self.oos_tablets / self.tablets_made)


def _less(total: float, part: float) -> float:
    """`total - part`, where the part was summed into the total in another order: a rounding
    residue of a total emptied in full is zero (so "no OOS tablet accepted" reads 0)."""
    left = total - part
    return 0.0 if abs(left) <= 1e-9 * max(abs(total), 1.0) else left
