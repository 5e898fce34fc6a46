"""Blend reaches the dies when the press has drawn the mass ahead of it in the feed frame.

The feed frame is plug flow. Timed at the press's draw when the blend left the blender, a
window came too early whenever the press slowed meanwhile: an impeller slowing down starves
the feed frame, and the line halves the press's rate (random campaign 322 compound: blend
reached the dies 25 s after its window had closed, and 165 tablets at 105-108 % LC were
released).
"""

from __future__ import annotations

import pytest

from apps.closed_loop import run
from controller import Supervisor
from core.faults import FaultSpec
from twin import Plant


@pytest.mark.parametrize("slowdown", [0.84, 0.7])
def test_a_noisy_blend_is_diverted_while_a_starved_press_slows(slowdown: float) -> None:
    """Timed at the draw when the blend left the blender: 60 and 62 OOS tablets released."""
    plant = Plant(seed=1, warm_start=True)
    plant.inject(FaultSpec("feeder_noise", magnitude=16.0, duration_s=1200, onset_s=800))
    plant.inject(FaultSpec("impeller_slowdown", magnitude=slowdown, duration_s=1200, onset_s=900))
    run(plant, Supervisor(), 2400.0)
    assert plant.ledger.oos_mass > 0.1  # the noisy feeder made OOS blend
    assert plant.ledger.oos_accepted_tablets == 0
