from __future__ import annotations

from collections.abc import Callable

import pytest

from twin import Plant


@pytest.fixture
def warm() -> Callable[..., Plant]:
    """A plant already in steady production at t=0 (seed 7 unless given)."""

    def make(**kwargs: object) -> Plant:
        kwargs.setdefault("seed", 7)
        return Plant(warm_start=True, **kwargs)  # type: ignore[arg-type]

    return make


def sample(plant: Plant, tag: str, start: float, end: float, step: float = 1.0) -> list[float]:
    """Values of a tag every `step` s of plant time over [start, end)."""
    values = []
    t = start
    plant.advance(t)
    while t < end:
        t += step
        plant.advance(t)
        values.append(float(plant.read(tag)))
    return values


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def sd(values: list[float]) -> float:
    m = mean(values)
    variance = sum((v - m) ** 2 for v in values) / (len(values) - 1)
    return float(variance**0.5)  # float ** float is typed Any: a negative base gives a complex
