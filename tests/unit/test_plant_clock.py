"""The OPC UA server's plant clock: where plant time is, and when the next tick falls."""

from __future__ import annotations

import pytest

from opcua_server.clock import PlantClock


class FakeWall:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_wall_delay_is_the_inverse_of_target_at_any_speed() -> None:
    wall = FakeWall()
    clock = PlantClock(speed=50.0, plant_now=7.0, monotonic=wall)
    assert clock.wall_delay(12.0) == pytest.approx(0.1)  # 5 plant s at 50x
    wall.now += 0.1
    assert clock.target() == pytest.approx(12.0)
    assert clock.wall_delay(12.0) == pytest.approx(0.0)
    wall.now += 0.3
    assert clock.wall_delay(12.0) == pytest.approx(-0.3)  # behind: negative


@pytest.mark.parametrize(
    ("plant_now", "step", "expected"),
    [
        (0.0, 0.1, 0.1),
        (0.05, 0.1, 0.1),
        (0.30000000000000004, 0.1, 0.4),  # float error on an instant counts as on it
        (0.2999999999, 0.1, 0.3),
        (12.0, 5.0, 15.0),
        (14.999, 5.0, 15.0),
        (3.7, 1.0, 4.0),  # a late tick's next instant is the next one ahead: no burst
    ],
)
def test_the_next_tick_is_the_next_instant_ahead(
    plant_now: float, step: float, expected: float
) -> None:
    clock = PlantClock(speed=1.0, monotonic=FakeWall())
    assert clock.next_instant(plant_now, step) == pytest.approx(expected)
