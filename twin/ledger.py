"""Ground truth: what was really made, and where it went. For scoring, never for control."""

from __future__ import annotations

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


class Ledger:
    """Running totals of the material balance and of quality, plus recent slices.

    `slices` keeps the most recent `keep` slices (all of them when `keep` is None).
    """

    def __init__(self, keep: int | None = 3600) -> None:
        self.fed_kg: dict[str, float] = {}
        self.tablets_made = 0.0
        self.tablets_accepted = 0.0
        self.tablets_diverted = 0.0
        self.mass_accepted = 0.0
        self.mass_diverted = 0.0
        self.mass_diverted_forced = 0.0
        self.oos_tablets = 0.0
        self.oos_mass = 0.0
        self.oos_accepted_tablets = 0.0
        self.oos_accepted_mass = 0.0
        self.oos_diverted_mass = 0.0
        self.slices: deque[TabletSlice] = deque(maxlen=keep)

    def record(self, piece: TabletSlice) -> None:
        self.slices.append(piece)
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

    @property
    def mass_diverted_on_command(self) -> float:
        """Mass diverted because someone asked (the controller, an operator), not the line."""
        return self.mass_diverted - self.mass_diverted_forced

    @property
    def total_fed_kg(self) -> float:
        return sum(self.fed_kg.values())

    @property
    def in_spec_pct(self) -> float:
        """Share of tablets made that were in spec, %."""
        if self.tablets_made == 0:
            return 0.0
        return 100.0 * (1.0 - self.oos_tablets / self.tablets_made)
