"""NIR noise, and the press's weight, force and hardness relations."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core.commands import LineCommand, SetpointCommand
from core.faults import FaultSpec
from tests.unit.conftest import mean, sample, sd
from twin import Plant
from twin.press import hardness_n, kawakita_pressure_mpa


def nir_errors(plant: Plant, seconds: float) -> list[float]:
    """NIR reading minus the true outlet concentration it looked at, for every spectrum."""
    nir = plant.modules["nir"]
    errors: list[float] = []
    acquire = nir.acquire

    def recording(now: float) -> None:
        acquire(now)
        errors.append(plant.read("nir.api_pct") - nir.blender.outlet_api_pct)

    nir.acquire = recording
    plant.advance(plant.now + seconds)
    return errors


def test_nir_noise_has_the_set_sd(warm: Callable[..., Plant]) -> None:
    plant = warm()
    errors = nir_errors(plant, 4000)
    assert len(errors) >= 1999  # one spectrum every 2 s
    set_sd = plant.modules["nir"].p.noise_sd_pct_ww
    assert sd(errors) == pytest.approx(set_sd, rel=0.08)
    assert abs(mean(errors)) < 3 * set_sd / len(errors) ** 0.5


def test_weight_follows_fill_depth_and_density(warm: Callable[..., Plant]) -> None:
    plant = warm()
    press = plant.modules["press"]
    before = mean(sample(plant, "press.tablet_weight", 0, 300))
    density = plant.modules["feed_frame"].hopper.head_density()
    area = press.area_mm2
    assert before == pytest.approx(press.fill_depth * area * density, rel=0.005)
    assert before == pytest.approx(400.0, rel=0.01)
    plant.apply(SetpointCommand("press.fill_depth_sp", 9.87 * 1.05))
    after = mean(sample(plant, "press.tablet_weight", 400, 700))
    assert after / before == pytest.approx(1.05, rel=0.005)


def test_force_follows_weight_by_kawakita(warm: Callable[..., Plant]) -> None:
    plant = warm()
    press = plant.modules["press"]
    p, area = press.p, press.area_mm2
    pressure = kawakita_pressure_mpa(400.0, 3.6, area, p)
    # Kawakita holds: (V0 - V) / V0 = a b P / (1 + b P)
    v0 = 400.0 / p.kawakita_ref_density_g_cm3
    c = (v0 - area * 3.6) / v0
    assert c == pytest.approx(
        p.kawakita_a * p.kawakita_b_per_mpa * pressure / (1 + p.kawakita_b_per_mpa * pressure)
    )
    force = mean(sample(plant, "press.main_force", 0, 300))
    assert force == pytest.approx(pressure * area / 1000.0, rel=0.01)
    assert 8.0 < force < 20.0  # kN, the usual window for a 400 mg, 10 mm tablet
    heavier = [kawakita_pressure_mpa(w, 3.6, area, p) for w in (380, 400, 420)]
    assert heavier == sorted(heavier) and heavier[2] / heavier[0] > 1.2


def test_hardness_follows_solid_fraction(warm: Callable[..., Plant]) -> None:
    plant = warm()
    p, area = plant.modules["press"].p, plant.modules["press"].area_mm2
    thickness = 3.6 * (1 + p.elastic_recovery)
    nominal = hardness_n(400.0, thickness, area, p)
    assert p.hardness_min_n < nominal < p.hardness_max_spec_n
    assert hardness_n(420.0, thickness, area, p) > nominal  # denser tablet
    assert hardness_n(400.0, thickness * 1.05, area, p) < nominal  # thicker, more porous
    measured = mean(sample(plant, "press.hardness", 0, 300))
    assert measured == pytest.approx(nominal, rel=0.01)


def test_production_rate_follows_turret_speed(warm: Callable[..., Plant]) -> None:
    plant = warm()
    plant.apply(SetpointCommand("press.turret_speed_sp", 20.0))
    plant.advance(60)
    assert plant.read("press.production_rate") == pytest.approx(20.0 * 36 * 60)


def test_same_seed_same_run_other_seed_other_run() -> None:
    def run(seed: int) -> tuple[object, ...]:
        plant = Plant(seed=seed)
        plant.apply(LineCommand("start"))
        plant.inject(FaultSpec("nir_dropout", onset_s=900, duration_s=300))
        plant.advance(1800)
        values = {k: v.value for k, v in plant.snapshot().items()}
        return values, plant.ledger.tablets_made, plant.ledger.oos_mass, len(plant.events)

    assert run(5) == run(5)
    assert run(5) != run(6)
