"""Each physical fault of the catalogue leaves its signature in the tags (domain.md)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core.commands import SetpointCommand
from core.faults import CATALOGUE, FaultSpec
from tests.unit.conftest import mean, sample, sd
from twin import Plant

Warm = Callable[..., Plant]


def inject(plant: Plant, kind: str, **kwargs: object) -> int:
    result = plant.inject(FaultSpec(kind, user="test", reason="signature test", **kwargs))  # type: ignore[arg-type]
    assert result.accepted, result.reason
    assert result.fault_id is not None
    return result.fault_id


def test_catalogue_has_the_thirteen_physical_faults() -> None:
    assert sorted(f.number for f in CATALOGUE.values()) == list(range(1, 14))


def test_1_refill_disturbance(warm: Warm) -> None:
    plant = warm()
    plant.advance(600)
    baseline = mean(sample(plant, "blender.true_api_pct", 600, 900))
    inject(plant, "refill_disturbance", magnitude=0.2, duration_s=600)
    plant.advance(plant.now + 2)
    assert plant.read("api_feeder.refilling") and plant.read("api_feeder.mode") == 1
    assert plant.snapshot()["api_feeder.mass_flow_pv"].quality == "uncertain"
    flow = sample(plant, "api_feeder.true_flow", plant.now, plant.now + 60)
    assert max(flow) > 2.0 * 1.15  # the densified powder overfeeds while volumetric
    nir = sample(plant, "blender.true_api_pct", plant.now, plant.now + 240)
    assert max(nir) > baseline * 1.05  # the bump reaches the blender outlet, smoothed


def test_2_feed_factor_drift(warm: Warm) -> None:
    plant = warm()
    before = mean(sample(plant, "api_feeder.drive_command", 0, 120))
    inject(plant, "feed_factor_drift", magnitude=-0.3, duration_s=3600)
    plant.advance(1800)
    after = mean(sample(plant, "api_feeder.drive_command", 1800, 1920))
    flow = mean(sample(plant, "api_feeder.mass_flow_pv", 1920, 2040))
    assert after > before * 1.12  # the drive creeps up ...
    assert flow == pytest.approx(2.0, rel=0.02)  # ... for the same flow


def test_3_bridging(warm: Warm) -> None:
    plant = warm()
    inject(plant, "bridging", magnitude=0.8, duration_s=600)
    plant.advance(300)
    assert plant.read("api_feeder.drive_command") == 100.0  # saturated
    assert mean(sample(plant, "api_feeder.true_flow", 300, 360)) < 0.5 * 2.0
    assert plant.read("api_feeder.mass_flow_pv") < 1.0
    plant.advance(1500)
    assert plant.read("api_feeder.drive_command") < 60.0  # recovers once the bridge collapses


def test_4_feeder_noise(warm: Warm) -> None:
    quiet = warm()
    noisy = warm()
    inject(noisy, "feeder_noise", magnitude=3.0)
    base_flow = sd(sample(quiet, "excipient_feeder.true_flow", 0, 900))
    hit_flow = sd(sample(noisy, "excipient_feeder.true_flow", 0, 900))
    assert hit_flow > 2.5 * base_flow
    base_blend = sd(sample(quiet, "blender.true_api_pct", 900, 2400, 2))
    hit_blend = sd(sample(noisy, "blender.true_api_pct", 900, 2400, 2))
    assert hit_blend > 1.5 * base_blend  # the blender smooths the noise but not all of it
    base_nir = sd(sample(quiet, "nir.api_pct", 2400, 3600, 2))
    hit_nir = sd(sample(noisy, "nir.api_pct", 2400, 3600, 2))
    assert hit_nir > 1.2 * base_nir


def test_5_load_cell_drift(warm: Warm) -> None:
    plant = warm()
    inject(plant, "load_cell_drift", magnitude=0.1, duration_s=0)
    plant.advance(900)
    reported = mean(sample(plant, "api_feeder.mass_flow_pv", 900, 1020))
    true = mean(sample(plant, "api_feeder.true_flow", 1020, 1140))
    assert reported == pytest.approx(2.0, rel=0.02)  # the feeder believes it is on setpoint
    assert true == pytest.approx(1.8, rel=0.03)  # but feeds 10 % less
    # Downstream, the blend is leaner than the feeders' ratio says.
    assert mean(sample(plant, "nir.api_pct", 1140, 1440, 2)) < 9.4


def test_6_impeller_slowdown(warm: Warm) -> None:
    plant = warm()
    holdup = mean(sample(plant, "blender.holdup_mass", 0, 60))
    residence = mean(sample(plant, "blender.residence_time", 0, 60))
    inject(plant, "impeller_slowdown", magnitude=0.4, duration_s=1800)
    plant.advance(900)
    assert plant.read("blender.speed_pv") == pytest.approx(150.0, rel=0.01)
    assert plant.read("blender.speed_sp") == 250.0
    assert mean(sample(plant, "blender.holdup_mass", 900, 960)) > 1.3 * holdup
    assert mean(sample(plant, "blender.residence_time", 900, 960)) > 1.3 * residence


def test_7_nir_bias(warm: Warm) -> None:
    plant = warm()
    inject(plant, "nir_bias", magnitude=0.8, duration_s=1200)
    reading = sample(plant, "nir.api_pct", 0, 600, 2)
    truth = sample(plant, "blender.true_api_pct", 600, 1200, 2)
    assert mean(reading) - mean(truth) == pytest.approx(0.8, abs=0.1)
    assert sd(reading) < 0.2  # variance stays normal: the spectrum looks fine
    assert plant.snapshot()["nir.api_pct"].quality == "good"


def test_8_nir_dropout(warm: Warm) -> None:
    plant = warm()
    inject(plant, "nir_dropout", magnitude=0.5, duration_s=1200)
    bad = stale = spikes = 0
    last_time = 0.0
    for t in range(2, 1200, 2):
        plant.advance(t + 0.5)
        value = plant.snapshot()["nir.api_pct"]
        bad += value.quality == "bad"
        stale += value.source_time == last_time
        spikes += abs(value.value - plant.read("blender.true_api_pct")) > 1.5
        last_time = value.source_time
    assert 200 < bad < 400  # about half the spectra are lost or spiky
    assert stale > 100 and spikes > 100


def test_9_lot_density_change(warm: Warm) -> None:
    plant = warm()
    weight = mean(sample(plant, "press.tablet_weight", 0, 120))
    force = mean(sample(plant, "press.main_force", 0, 120))
    inject(plant, "lot_density_change", target="excipient_feeder", magnitude=0.08)
    plant.advance(240)  # one blender RTD and the feed frame delay later
    assert plant.read("press.fill_depth_pv") == pytest.approx(9.87)
    assert mean(sample(plant, "press.tablet_weight", 240, 360)) > weight * 1.05
    assert mean(sample(plant, "press.main_force", 360, 420)) > force * 1.2
    # Heavier tablets draw more powder than is fed: without a weight loop the hopper drains.
    plant.advance(1200)
    assert plant.state == "faulted"


def test_10_punch_wear(warm: Warm) -> None:
    plant = warm()
    thickness = mean(sample(plant, "press.thickness", 0, 10))
    hardness = mean(sample(plant, "press.hardness", 10, 70))
    force = mean(sample(plant, "press.main_force", 70, 130))
    inject(plant, "punch_wear", magnitude=0.4, duration_s=0)
    plant.advance(130 + 1800)  # 0.2 mm of wear
    assert plant.read("press.thickness") == pytest.approx(thickness + 0.2 * 1.11, rel=0.002)
    assert mean(sample(plant, "press.hardness", 1930, 1990)) < 0.8 * hardness
    assert mean(sample(plant, "press.main_force", 1990, 2050)) < 0.8 * force


def test_11_fill_depth_stiction(warm: Warm) -> None:
    plant = warm()
    inject(plant, "fill_depth_stiction", magnitude=0.1)
    plant.apply(SetpointCommand("press.fill_depth_sp", 9.93))
    plant.advance(30)
    assert plant.read("press.fill_depth_pv") == pytest.approx(9.87)  # stuck
    plant.apply(SetpointCommand("press.fill_depth_sp", 10.0))
    plant.advance(32)
    assert plant.read("press.fill_depth_pv") == pytest.approx(10.0)  # slipped in one jump


@pytest.mark.parametrize("stiction", [0.0, 0.15])
def test_11_stiction_makes_a_weight_loop_limit_cycle(warm: Warm, stiction: float) -> None:
    """A plain integral weight loop settles without stiction and cycles with it."""
    plant = warm()
    if stiction:
        inject(plant, "fill_depth_stiction", magnitude=stiction)
    depth = 9.87
    positions = []
    for t in range(10, 3600, 10):
        plant.advance(t)
        depth += 0.004 * (404.0 - plant.read("press.tablet_weight"))  # aim 1 % heavy
        plant.apply(SetpointCommand("press.fill_depth_sp", depth, user="test-loop"))
        positions.append(plant.read("press.fill_depth_pv"))
    true_weights = [s.weight_mg for s in plant.ledger.slices][-1200:]
    jumps = sum(
        1
        for a, b in zip(positions[-120:], positions[-119:], strict=False)
        if abs(b - a) >= stiction > 0
    )
    swing = max(true_weights) - min(true_weights)
    if stiction:
        assert swing > 5.0 and jumps >= 3  # stick, slip past the target, stick again
    else:
        assert swing < 3.0 and jumps == 0


def test_12_turret_speed_step(warm: Warm) -> None:
    plant = warm()
    level = plant.modules["feed_frame"].level
    inject(plant, "turret_speed_step", magnitude=1.0, duration_s=300)
    plant.advance(290)
    assert plant.read("press.turret_speed_pv") == pytest.approx(24.15)
    assert plant.read("press.turret_speed_sp") == 23.15
    assert plant.read("press.production_rate") > 51_500
    assert plant.read("feed_frame.level") < level - 0.05  # the hopper drains


def test_13_diverter_stuck(warm: Warm) -> None:
    plant = warm()
    inject(plant, "diverter_stuck")
    inject(plant, "bridging", magnitude=0.9, duration_s=300)
    plant.apply(SetpointCommand("diverter.position_sp", "reject", reason="OOS predicted"))
    plant.advance(600)
    assert plant.read("diverter.position_sp") == 1
    assert plant.read("diverter.position_pv") == 0  # still at accept
    assert plant.read("diverter.true_oos_accepted") > 0  # OOS tablets went to accept


def test_faults_end_after_their_duration_and_can_be_cleared(warm: Warm) -> None:
    plant = warm()
    timed = inject(plant, "impeller_slowdown", magnitude=0.5, duration_s=100)
    held = inject(plant, "nir_bias", magnitude=1.0)
    assert plant.read("line.active_faults") == 0  # published with the next step
    plant.advance(50)
    assert plant.read("line.active_faults") == 2
    plant.advance(150)
    assert [f.id for f in plant.faults()] == [held]
    assert plant.modules["blender"].speed_loss == 0.0
    assert plant.clear(held, user="bob", reason="probe cleaned").accepted
    assert plant.modules["nir"].bias == 0.0
    assert not plant.clear(held).accepted
    assert not plant.clear(99).accepted
    actions = [(r.user, r.action, r.accepted) for r in plant.audit]
    assert actions == [
        ("test", "inject_fault", True),
        ("test", "inject_fault", True),
        ("twin", "fault_ended", True),
        ("bob", "clear_fault", True),
        ("operator", "clear_fault", False),
        ("operator", "clear_fault", False),
    ]
    assert timed in [f.id for f in plant.faults(include_ended=True)]


def test_a_fault_can_be_scheduled(warm: Warm) -> None:
    plant = warm()
    inject(plant, "nir_bias", magnitude=2.0, onset_s=100, duration_s=50)
    plant.advance(99)
    assert plant.modules["nir"].bias == 0.0
    plant.advance(120)
    assert plant.modules["nir"].bias == 2.0
    plant.advance(200)
    assert plant.modules["nir"].bias == 0.0


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (FaultSpec("meteor"), "unknown fault 'meteor'"),
        (FaultSpec("bridging", target="blender"), "needs a feeder target"),
        (FaultSpec("bridging", target="nowhere"), "needs a feeder target"),
        (FaultSpec("bridging", magnitude=1.5), "outside 0..1 fraction"),
        (FaultSpec("bridging", magnitude=float("nan")), "outside"),
        (FaultSpec("bridging", duration_s=-5), "duration must be"),
        (FaultSpec("bridging", onset_s=-1), "in the past"),
    ],
)
def test_bad_fault_requests_are_rejected_and_audited(
    warm: Warm, spec: FaultSpec, reason: str
) -> None:
    plant = warm()
    result = plant.inject(spec)
    assert not result.accepted and reason in result.reason
    record = list(plant.audit)[-1]
    assert record.action == "inject_fault" and not record.accepted and reason in record.result


def test_the_same_fault_twice_is_rejected(warm: Warm) -> None:
    plant = warm()
    inject(plant, "bridging")
    again = plant.inject(FaultSpec("bridging"))
    assert not again.accepted and "already active" in again.reason
    assert plant.inject(FaultSpec("bridging", target="excipient_feeder")).accepted
