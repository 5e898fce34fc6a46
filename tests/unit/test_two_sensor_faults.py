"""Two sensor faults at once: a probe's offset and a load cell's drift.

The probe's offset is measured as a step of the gap between the NIR and the feeders. When the
load cell's drift moves the blend at the same time, its ramp is in that step, and the probe less
the offset misjudges the blend (random campaign 202 compound, outside the seeds the rules were
worked out on: a -0.55 % w/w probe step measured at -0.81 with a +21 % load cell's lean ramp in
it; judged 2.6 % LC too rich, 123 tablets at 94.4-95.0 % LC released). The feeders put right by
the diagnosed load cell's gap are a third opinion, and the blend is judged by the worst.
"""

from __future__ import annotations

import pytest

from controller import ControllerConfig
from controller.blend import Blend
from controller.supervisor import Supervisor

# Campaign 202 compound at 1,340 s (% w/w): what the controller read, and the truth.
NIR = 8.72  # the probe, biased -0.548 (the truth is NIR + 0.548)
TRUE_BLEND = NIR + 0.548  # 9.27: 92.7 % LC, out of spec
FEEDERS = 11.456  # the feeders' RTD prediction, 2.2 % w/w rich: the drifting load cell
OFFSET = -0.813  # the probe's step as measured, the load cell's ramp in it
LOAD_CELL_GAP = -2.31  # what the diagnosed drift makes of the feeders' estimate


def _blend(load_cell_gap: float | None) -> Blend:
    blend = Supervisor(ControllerConfig()).blend
    blend.nir_value, blend.feeders_value = NIR, FEEDERS
    blend.disagreement.value = NIR - FEEDERS
    blend.suspect_probe(OFFSET)
    blend.conds.update(0.0, "load_cell_drift", True, 0.0, "drifting")
    assert blend.conds.active("load_cell_drift")
    blend.load_cell_gap = load_cell_gap
    return blend


def test_the_blend_is_judged_by_the_worse_of_the_probe_and_the_load_cells_model() -> None:
    estimate, _ = _blend(LOAD_CELL_GAP).trusted()
    assert estimate == pytest.approx(FEEDERS + LOAD_CELL_GAP)
    assert estimate is not None and estimate < TRUE_BLEND < 9.5  # leaner than the truth: diverted


def test_without_the_load_cells_gap_the_probe_less_its_offset_reads_in_spec() -> None:
    """The case the rule is for: the probe less its offset alone reads 95.3 % LC."""
    estimate, _ = _blend(None).trusted()
    assert estimate == pytest.approx(NIR - OFFSET)
    assert estimate is not None and estimate > 9.5 > TRUE_BLEND


def test_a_load_cells_gap_that_reads_nearer_target_changes_nothing() -> None:
    """The third opinion can only make the judgement stricter."""
    estimate, _ = _blend(-1.0).trusted()  # feeders + gap = 10.456, nearer the 10 % target
    assert estimate == pytest.approx(NIR - OFFSET)
