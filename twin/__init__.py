"""The plant twin: a SimPy model of a PCMM-style continuous direct-compression line.

The twin is pure simulation: it imports SimPy, the standard library and `core` only (the
registry, the RTD model, the command records, the layout and the fault catalogue). It has no
clock, sockets or logging of its own; an adapter advances it with `Plant.advance(until)`.
"""

from twin.plant import Plant
from twin.store import TagValue

__all__ = ["Plant", "TagValue"]
