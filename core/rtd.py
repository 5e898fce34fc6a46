"""Residence time distribution of the continuous blender: the analytic tanks-in-series model.

Pure functions shared by the twin (which simulates the blender), the controller (which predicts
when disturbed material reaches the press) and the tests (which check one against the other).
"""

from __future__ import annotations

import math


def steady_holdup_kg(
    flow_kgh: float,
    speed_rpm: float,
    holdup_ref_kg: float,
    flow_ref_kgh: float,
    speed_ref_rpm: float,
    flow_exponent: float,
    speed_exponent: float,
) -> float:
    """Steady hold-up: grows with throughput, falls as the impeller speeds up."""
    if flow_kgh <= 0.0 or speed_rpm <= 0.0:
        return 0.0
    return float(
        holdup_ref_kg
        * (flow_kgh / flow_ref_kgh) ** flow_exponent
        * (speed_ref_rpm / speed_rpm) ** speed_exponent
    )


def mean_residence_time_s(holdup_kg: float, flow_kgh: float) -> float:
    """Mean residence time = hold-up / throughput."""
    return holdup_kg / flow_kgh * 3600.0


def tanks_in_series_pdf(t: float, mean_s: float, tanks: int) -> float:
    """E(t) of n equal stirred tanks in series with total mean residence time `mean_s`."""
    if t < 0.0:
        return 0.0
    tau = mean_s / tanks
    return (t ** (tanks - 1) / (math.factorial(tanks - 1) * tau**tanks)) * math.exp(-t / tau)


def tanks_in_series_cdf(t: float, mean_s: float, tanks: int) -> float:
    """F(t): share of material that entered at time 0 and has left by time t."""
    if t <= 0.0:
        return 0.0
    x = t / (mean_s / tanks)
    term, total = 1.0, 1.0
    for k in range(1, tanks):
        term *= x / k
        total += term
    return 1.0 - math.exp(-x) * total
