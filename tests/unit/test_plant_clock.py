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


@pytest.mark.parametrize(
    ("plant_now", "target", "most", "expected"),
    [
        (1.0, 1.1005, 20, []),  # on time: the tick at the target is the instant's own
        (1.0, 1.0995, 20, []),  # woken a hair early: nothing passed over either
        (1.0, 1.3005, 20, [1.1, 1.2]),  # two instants passed over, the third is the target's
        (1.0001, 1.2005, 20, [1.1]),  # a tick just after an instant
        (1.0, 5.0005, 5, [4.5, 4.6, 4.7, 4.8, 4.9]),  # a long stall: only the newest few
        (0.30000000000000004, 0.6001, 20, [0.4, 0.5]),  # float error on an instant
    ],
)
def test_a_late_clock_ticks_the_instants_it_passed_over_and_no_more(
    plant_now: float, target: float, most: int, expected: list[float]
) -> None:
    clock = PlantClock(speed=1.0, monotonic=FakeWall())
    assert clock.missed_instants(plant_now, target, 0.1, most) == pytest.approx(expected)
