"""Material as it moves through the pod.

A parcel of powder is a vector of extensive quantities: the mass (kg) of each component in
`Components.names` order, then its bulk volume (L). Extensive quantities add when powders mix,
so concentration (`api / mass`) and bulk density (`mass / volume`) fall out of mixing for free.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Components:
    """The components of a pod's blend, from its feeders' materials."""

    names: tuple[str, ...]

    @property
    def api(self) -> int:
        return self.names.index("api")

    @property
    def volume(self) -> int:
        """Index of the bulk volume slot."""
        return len(self.names)

    def empty(self) -> list[float]:
        return [0.0] * (len(self.names) + 1)


class PlugFlowHopper:
    """First in, first out: what enters first leaves first, so the delay is level / draw rate."""

    def __init__(self, components: Components) -> None:
        self._volume = components.volume
        self._size = components.volume + 1
        self._parcels: deque[tuple[float, list[float]]] = deque()
        self.mass = 0.0

    def put(self, mass: float, parcel: list[float]) -> None:
        if mass > 0.0:
            self._parcels.append((mass, parcel))
            self.mass += mass

    def head_density(self) -> float:
        """Bulk density (g/cm3) of the powder next in line, 0 when empty."""
        if not self._parcels:
            return 0.0
        mass, parcel = self._parcels[0]
        volume = parcel[self._volume]
        return mass / volume if volume > 0.0 else 0.0

    def take(self, demand: float) -> tuple[float, list[float]]:
        """Remove up to `demand` kg from the head; return the mass and vector actually taken."""
        taken = [0.0] * self._size
        got = 0.0
        parcels = self._parcels
        while parcels and got < demand:
            mass, parcel = parcels[0]
            want = demand - got
            if mass <= want:
                parcels.popleft()
                for i, x in enumerate(parcel):
                    taken[i] += x
                got += mass
            else:
                share = want / mass
                rest = 1.0 - share
                for i, x in enumerate(parcel):
                    taken[i] += x * share
                parcels[0] = (mass - want, [x * rest for x in parcel])
                got = demand
        self.mass = self.mass - got if parcels else 0.0
        return got, taken

    def contents(self) -> list[float]:
        total = [0.0] * self._size
        for _, parcel in self._parcels:
            for i, x in enumerate(parcel):
                total[i] += x
        return total
