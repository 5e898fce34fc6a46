"""Mass balance: everything fed is accepted, diverted or still inside the line."""

from __future__ import annotations

from core.commands import LineCommand
from core.faults import FaultSpec
from twin import Plant


def balance_error(plant: Plant) -> float:
    ledger = plant.ledger
    fed = ledger.total_fed_kg
    return abs(fed - ledger.mass_accepted - ledger.mass_diverted - plant.holdup_kg()) / fed


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
