"""Mass balance: everything fed is accepted, diverted or still inside the line."""

from __future__ import annotations

import pytest

from core.commands import LineCommand
from core.faults import FaultSpec
from twin import Plant


def balance_error(plant: Plant) -> float:
    ledger = plant.ledger
    fed = ledger.total_fed_kg
    out = ledger.mass_accepted + ledger.mass_diverted + ledger.mass_cleaned_out
    return abs(fed - out - plant.holdup_kg()) / fed


def test_balance_closes_through_start_faults_and_stop() -> None:
    plant = Plant(seed=11)
    plant.apply(LineCommand("start"))
    plant.inject(FaultSpec("refill_disturbance", onset_s=1200, duration_s=300))
    plant.inject(FaultSpec("impeller_slowdown", magnitude=0.5, onset_s=2400, duration_s=600))
    plant.inject(FaultSpec("lot_density_change", magnitude=0.1, onset_s=3000, duration_s=600))
    for t in (600, 1800, 3600, 5400):
        plant.advance(t)
        assert balance_error(plant) < 0.001, t
    plant.apply(LineCommand("stop"))
    plant.advance(7200)
    assert plant.state == "stopped"
    assert balance_error(plant) < 0.001
    # Much has been made, and start-up and shut-down material went to reject.
    assert plant.ledger.mass_accepted > 20.0
    assert plant.ledger.mass_diverted > 0.5


def test_throughput_matches_feed_at_steady_state() -> None:
    plant = Plant(seed=2, warm_start=True)
    plant.advance(3600)
    made = plant.ledger.mass_accepted + plant.ledger.mass_diverted
    assert abs(made - 20.0) < 0.4  # 20 kg/h of feed becomes 20 kg/h of tablets
    assert abs(plant.read("press.production_rate") / 50_000 - 1) < 0.01


def test_a_reset_after_an_overflow_cleans_the_feed_frame_out_and_the_line_runs_again() -> None:
    # A 90 % impeller slowdown builds the blender's hold-up; when it ends, the blender dumps it
    # into the feed frame, which overflows. Every start used to trip again at once: the
    # feeders run while the line starts, so the frame only grew (2.7 kg in a 1-kg frame).
    plant = Plant(seed=3)  # a cold start: the balance counts from an empty line
    plant.apply(LineCommand("start", "operator", "test"))
    plant.inject(FaultSpec("impeller_slowdown", magnitude=0.9, onset_s=900, duration_s=900))
    overflowed = False
    for t in range(10, 3610, 10):
        plant.advance(t)
        if plant.state == "faulted":
            trips = [e.message for e in plant.events if e.kind == "state"]
            overflowed |= "overflow" in trips[-1]
            assert plant.apply(LineCommand("reset", "operator", "after a trip")).accepted
            assert plant.apply(LineCommand("start", "operator", "after a trip")).accepted
    assert overflowed
    assert plant.state == "producing"
    frame = plant.read("feed_frame.level")
    assert 0.0 < frame < 1.0
    removed = plant.ledger.mass_cleaned_out
    assert removed > 0.5
    cleaned = [e for e in plant.events if e.kind == "clean_out"]
    assert cleaned and cleaned[0].module == "feed_frame"
    # The audit trail accounts for it: the reset's record names the powder taken out.
    resets = [r for r in plant.audit if r.action == "reset" and "cleaned out" in r.result]
    assert resets and resets[0].accepted
    assert resets[0].result.startswith("accepted; feed_frame cleaned out, ")
    assert sum(float(r.result.split(", ")[1].split(" kg")[0]) for r in resets) == pytest.approx(
        removed, abs=0.001 * len(resets)
    )
    assert balance_error(plant) < 0.001


def test_a_reset_leaves_a_feed_frame_within_its_capacity_alone() -> None:
    plant = Plant(seed=4, warm_start=True)
    plant.advance(300)
    level = plant.read("feed_frame.level")
    assert plant.apply(LineCommand("abort", "operator", "test")).accepted
    assert plant.apply(LineCommand("reset", "operator", "test")).accepted
    assert plant.read("feed_frame.level") == level
    assert plant.ledger.mass_cleaned_out == 0.0
