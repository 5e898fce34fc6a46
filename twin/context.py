"""What every module of a pod shares: the SimPy environment, the tag table, the ledger."""

from __future__ import annotations

import random
import zlib
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import simpy

from twin.ledger import Ledger
from twin.material import Components
from twin.store import TagStore

if TYPE_CHECKING:
    from twin.line import Line

#: What a SimPy process function returns: a generator of events.
ProcessGenerator = Generator[Any, Any, None]


@dataclass(frozen=True, slots=True)
class PlantEvent:
    """Something the equipment did by itself (state change, refill, trip, fault start/end)."""

    seq: int
    time: float
    module: str
    kind: str
    message: str


@dataclass
class Context:
    env: simpy.Environment
    dt: float
    seed: int
    store: TagStore
    ledger: Ledger
    components: Components
    events: deque[PlantEvent] = field(default_factory=lambda: deque(maxlen=10_000))
    event_count: int = 0
    _line: Line | None = None

    @property
    def line(self) -> Line:
        assert self._line is not None, "the line module is created first"
        return self._line

    def rng(self, name: str) -> random.Random:
        """A random stream per module, stable for a seed whatever else the pod contains."""
        return random.Random(zlib.crc32(f"{self.seed}:{name}".encode()))

    def event(self, module: str, kind: str, message: str) -> None:
        self.event_count += 1
        self.events.append(
            PlantEvent(
                seq=self.event_count, time=self.env.now, module=module, kind=kind, message=message
            )
        )
