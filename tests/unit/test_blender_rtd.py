"""The simulated blender against the analytic tanks-in-series RTD model (core.rtd)."""

from __future__ import annotations

import dataclasses

import pytest

from core.layout import load_layout
from core.rtd import (
    mean_residence_time_s,
    steady_holdup_kg,
    tanks_in_series_cdf,
    tanks_in_series_pdf,
)
from twin import Plant
from twin.blender import Blender


def quiet_plant() -> Plant:
    """A warm plant whose feeders deliver exactly their setpoints, so a tracer stands out."""
    layout = load_layout()
    modules = tuple(
        dataclasses.replace(m, params=dataclasses.replace(m.params, flow_rsd=0.0))
        if m.type == "feeder"
        else m
        for m in layout.modules
    )
    return Plant(dataclasses.replace(layout, modules=modules), seed=1, warm_start=True)


def tracer_response(plant: Plant, pulse_kg: float, seconds: int) -> list[float]:
    """Put a pulse of API into the blender inlet; return API leaving it each second."""
    blender: Blender = plant.modules["blender"]
    api = plant.components.api
    out: list[float] = []
    baseline = blender.outlet_api_pct
    plant.advance(plant.now + 0.5)
    blender.inlet[api] += pulse_kg
    blender.inlet[-1] += pulse_kg / 0.35
    for _ in range(seconds):
        plant.advance(plant.now + 1)
        flow_kg_s = blender.out_flow_kgh / 3600.0
        out.append((blender.outlet_api_pct - baseline) / 100.0 * flow_kg_s)
    return out


@pytest.mark.parametrize("speed", [250.0, 150.0])
def test_mean_residence_time_matches_the_model(speed: float) -> None:
    plant = quiet_plant()
    blender: Blender = plant.modules["blender"]
    blender.write("speed_sp", speed)
    plant.advance(900)  # settle at the new speed
    p = blender.p
    expected_holdup = steady_holdup_kg(
        20.0,
        speed,
        p.holdup_ref_kg,
        p.flow_ref_kgh,
        p.speed_ref_rpm,
        p.flow_exponent,
        p.speed_exponent,
    )
    assert blender.holdup == pytest.approx(expected_holdup, rel=0.03)
    response = tracer_response(plant, 0.005, 900)
    times = [i + 1.0 for i in range(len(response))]
    area = sum(response)
    measured = sum(t * e for t, e in zip(times, response, strict=True)) / area
    analytic = mean_residence_time_s(expected_holdup, 20.0)
    assert measured == pytest.approx(analytic, rel=0.05)
    # All the tracer comes out; as excess concentration it shows less the 10 % API it displaces.
    assert area == pytest.approx(0.005 * (1 - 0.1), rel=0.02)


def test_distribution_has_the_tanks_in_series_shape() -> None:
    plant = quiet_plant()
    response = tracer_response(plant, 0.005, 600)
    area = sum(response)
    mean_s = sum((i + 1) * e for i, e in enumerate(response)) / area
    n = plant.modules["blender"].p.tanks
    cumulative = 0.0
    for i, e in enumerate(response):
        cumulative += e / area
        assert abs(cumulative - tanks_in_series_cdf(i + 1.0, mean_s, n)) < 0.06


def test_analytic_pdf_integrates_to_one_with_the_right_mean() -> None:
    dt = 0.1
    ts = [i * dt for i in range(1, 20_000)]
    pdf = [tanks_in_series_pdf(t, 60.0, 4) for t in ts]
    assert sum(pdf) * dt == pytest.approx(1.0, abs=1e-3)
    assert sum(t * e for t, e in zip(ts, pdf, strict=True)) * dt == pytest.approx(60.0, rel=1e-3)
    assert tanks_in_series_cdf(1e6, 60.0, 4) == pytest.approx(1.0)


def test_holdup_falls_as_speed_rises_and_grows_with_throughput() -> None:
    args = (0.333, 20.0, 250.0, 0.6, 0.7)
    assert steady_holdup_kg(20, 300, *args) < steady_holdup_kg(20, 250, *args)
    assert steady_holdup_kg(30, 250, *args) > steady_holdup_kg(20, 250, *args)
    # but residence time falls with throughput: hold-up grows less than in proportion
    assert mean_residence_time_s(steady_holdup_kg(30, 250, *args), 30) < 60.0
