"""The plant twin: a SimPy model of a PCMM-style continuous direct-compression line.

The twin is pure simulation: it imports SimPy, the standard library and the project's pure
registry (`plant.tags`, `plant.rtd`) only. It has no clock, sockets or logging of its own; an
adapter at the edge advances it with `Plant.advance(until)`.
"""

from twin.commands import CommandResult, LineCommand, QuarantineCommand, SetpointCommand
from twin.faults import CATALOGUE, FaultSpec
from twin.layout import Layout, LayoutError, load_layout
from twin.plant import Plant
from twin.store import TagValue

__all__ = [
    "CATALOGUE",
    "CommandResult",
    "FaultSpec",
    "Layout",
    "LayoutError",
    "LineCommand",
    "Plant",
    "QuarantineCommand",
    "SetpointCommand",
    "TagValue",
    "load_layout",
]
