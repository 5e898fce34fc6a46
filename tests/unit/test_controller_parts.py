"""The controller's pure parts: laws, estimators, the diversion planner."""

from __future__ import annotations

import math
import random

import pytest

from controller import ControllerConfig, laws
from controller.diversion import DiversionPlanner
from controller.estimators import (
    FeedFactorCurve,
    RobustNir,
    RobustSpread,
    RtdPredictor,
    SlidingRange,
    arrival_time,
    content_pct,
)
from core.rtd import tanks_in_series_cdf

CFG = ControllerConfig()
FILL = {
    "low": CFG.fill_depth_min_mm,
    "high": CFG.fill_depth_max_mm,
    "max_step_mm": CFG.fill_depth_max_step_mm,
    "min_step_mm": CFG.fill_depth_step_mm,
}
TURRET = {"low": CFG.turret_min_rpm, "high": CFG.turret_max_rpm}
API = {"max_step": CFG.concentration_max_step, "min_step_kgh": CFG.api_step_kgh}
GAP = {
    "low": CFG.main_gap_min_mm,
    "high": CFG.main_gap_max_mm,
    "max_step_mm": CFG.main_gap_max_step_mm,
    "min_step_mm": CFG.main_gap_step_mm,
}


def test_weight_trim_moves_fill_depth_toward_target() -> None:
    assert laws.weight_trim(10.0, 390.0, 400.0, 0.006, 1.0, **FILL) == pytest.approx(10.06)
    assert laws.weight_trim(10.0, 410.0, 400.0, 0.006, 1.0, **FILL) == pytest.approx(9.94)
    assert laws.weight_trim(10.0, 400.5, 400.0, 0.006, 1.0, **FILL) is None  # inside the deadband
    assert laws.weight_trim(12.95, 300.0, 400.0, 0.006, 1.0, **FILL) == 13.0  # clamped to the range
    assert laws.weight_trim(10.0, 200.0, 400.0, 0.006, 1.0, **FILL) == pytest.approx(
        10.3
    )  # rate limit


def test_turret_speed_matches_feed_and_holds_level() -> None:
    nominal = laws.turret_speed(20.0, 400.0, 36, 0.25, 0.25, 0.5, **TURRET)
    assert nominal == pytest.approx(50_000 / 36 / 60)
    assert (
        laws.turret_speed(20.0, 400.0, 36, 0.35, 0.25, 0.5, **TURRET) > nominal
    )  # high level: faster
    assert laws.turret_speed(20.0, 400.0, 36, 0.15, 0.25, 0.5, **TURRET) < nominal
    assert laws.turret_speed(100.0, 400.0, 36, 0.25, 0.25, 0.5, **TURRET) == 35.0


def test_concentration_trim_keeps_direction_and_limits() -> None:
    assert laws.concentration_trim(2.0, 20.0, 9.0, 10.0, 0.1, 0.08, **API) == pytest.approx(2.02)
    assert laws.concentration_trim(2.0, 20.0, 11.0, 10.0, 0.1, 0.08, **API) == pytest.approx(1.98)
    assert laws.concentration_trim(2.0, 20.0, 10.05, 10.0, 0.1, 0.08, **API) is None
    assert laws.concentration_trim(2.0, 20.0, 1.0, 10.0, 1.0, 0.08, **API) == pytest.approx(2.1)


def test_hardness_trim_tightens_gap_for_soft_tablets() -> None:
    assert laws.hardness_trim(3.6, 100.0, 120.0, 0.001, 4.0, **GAP) == pytest.approx(3.58)
    assert laws.hardness_trim(3.6, 140.0, 120.0, 0.001, 4.0, **GAP) == pytest.approx(3.62)
    assert laws.hardness_trim(3.6, 118.0, 120.0, 0.001, 4.0, **GAP) is None


def test_speed_restore_asks_for_what_the_drive_loses() -> None:
    assert laws.speed_restore(250.0, 150.0, 250.0, 400.0, min_step_rpm=CFG.speed_step_rpm) == 400.0
    assert laws.speed_restore(
        250.0, 200.0, 250.0, 400.0, min_step_rpm=CFG.speed_step_rpm
    ) == pytest.approx(312.5)
    assert (
        laws.speed_restore(400.0, 400.0 * 250 / 250, 250.0, 400.0, min_step_rpm=CFG.speed_step_rpm)
        == 250.0
    )  # fault gone
    assert laws.speed_restore(250.0, 249.5, 250.0, 400.0, min_step_rpm=CFG.speed_step_rpm) is None


def test_robust_nir_ignores_spikes_and_bad_readings() -> None:
    nir = RobustNir()
    for i, value in enumerate([10.0, 10.02, 9.98, 10.01, 14.0, 10.0]):
        nir.update(value, True, 2.0 * i)
    nir.update(3.0, False, 12.0)
    assert nir.estimate(12.0) == pytest.approx(10.0, abs=0.02)
    assert nir.estimate(30.0) is None  # stale
    assert nir.last_step is None


def test_robust_nir_follows_a_step_and_reports_it() -> None:
    nir = RobustNir()
    for i in range(5):
        nir.update(10.0, True, 2.0 * i)
    for i in range(5, 10):
        nir.update(10.8, True, 2.0 * i)
    assert nir.last_step is not None and nir.last_step[1] == pytest.approx(0.8)
    assert nir.estimate(20.0) == pytest.approx(10.8)


def test_robust_nir_reports_a_step_whose_spectra_come_far_apart() -> None:
    """Under heavy dropout (a good spectrum every 16 s, the rest lost), a probe's step is
    still a step: its spectra are set aside until four agree, over more than the minute
    after which a quiet probe starts afresh. Before, the fourth was taken for a fresh start
    and the step went unreported (random campaign 6 compound)."""
    nir = RobustNir()
    for i in range(5):
        nir.update(10.0, True, 2.0 * i)
    t = 8.0
    for _ in range(4):
        for _ in range(7):
            t += 2.0
            nir.update(0.0, False, t)  # lost
        t += 2.0
        nir.update(13.3, True, t)
    assert nir.last_step is not None
    assert nir.last_step[0] == t and nir.last_step[1] == pytest.approx(3.3)
    assert nir.estimate(t) == pytest.approx(13.3)


def test_robust_nir_reports_a_step_a_quiet_spell_cut_short() -> None:
    """Two spectra of a step set aside, then none for 96 s (90 % dropout), then more at the
    new level: the readings on both sides of the spell are the step, taken four at a time as
    the set-aside ones are (the probe's own noise spreads five of them over 0.32 % w/w)."""
    nir = RobustNir()
    for i in range(5):
        nir.update(10.0, True, 2.0 * i)
    for t, value in ((12.0, 13.52), (40.0, 13.40), (136.0, 13.33), (138.0, 13.20)):
        nir.update(value, True, t)
    assert nir.last_step is None  # 13.52 to 13.20: too far apart to be one level yet
    nir.update(13.43, True, 146.0)
    assert nir.last_step is not None
    assert nir.last_step[0] == 146.0 and nir.last_step[1] == pytest.approx(3.365)


def test_robust_nir_takes_a_spike_before_a_quiet_spell_for_no_step() -> None:
    nir = RobustNir()
    for i in range(5):
        nir.update(10.0, True, 2.0 * i)
    nir.update(13.5, True, 12.0)  # a spike, then nothing for over a minute
    for i in range(8):
        nir.update(10.02, True, 90.0 + 2.0 * i)
    assert nir.last_step is None
    assert nir.estimate(104.0) == pytest.approx(10.02)


def test_robust_nir_starts_afresh_after_a_quiet_minute() -> None:
    """No good spectrum at all for over a minute (a stopped line): the blend seen next is no
    step from the one seen before."""
    nir = RobustNir()
    for i in range(5):
        nir.update(10.0, True, 2.0 * i)
    for i in range(4):
        nir.update(13.3, True, 70.0 + 2.0 * i)
    assert nir.last_step is None
    assert nir.estimate(76.0) == pytest.approx(13.3)


def test_robust_nir_accepts_fast_moves_the_feeders_explain() -> None:
    nir = RobustNir()
    for i in range(5):
        nir.update(10.0 - 0.7 * i, True, 2.0 * i, expected_move=2.1)
    assert nir.estimate(8.0) == pytest.approx(10.0 - 0.7 * 3)
    assert nir.last_step is None


def test_robust_nir_counts_spectra_lost_without_a_reading_from_the_gap() -> None:
    seen, blind = RobustNir(), RobustNir()
    t = 0.0
    for i in range(40):
        t += 4.0 if i % 2 else 2.0  # every other spectrum lost, its reading left standing
        seen.update(10.0, True, t, period_s=2.0)
        blind.update(10.0, True, t)  # telemetry too sparse to show every spectrum
    assert seen.bad_fraction == pytest.approx(1 / 3, abs=0.02)
    assert blind.bad_fraction == 0.0


def test_rtd_predictor_has_the_tanks_in_series_step_response() -> None:
    rtd = RtdPredictor(5)
    rtd.update(10.0, 60.0, 1.0)
    out = [rtd.update(11.0, 60.0, 1.0) for _ in range(300)]
    for t in (30, 60, 120):
        expected = 10.0 + tanks_in_series_cdf(float(t), 60.0, 5)
        assert out[t - 1] == pytest.approx(expected, abs=0.03)


def test_arrival_and_content() -> None:
    assert arrival_time(100.0, 0.25, 0.25 / 45.0) == pytest.approx(145.0)
    assert arrival_time(100.0, 0.25, 0.0) is None
    assert content_pct(400.0, 10.0, 40.0) == pytest.approx(100.0)


def test_planner_merges_windows_and_opens_early() -> None:
    planner = DiversionPlanner(margin_s=4.0, lead_s=3.0)
    planner.flag(100.0, "low")
    planner.flag(105.0, "low again")
    planner.flag(200.0, "high")
    assert [(w.start, w.end) for w in planner.windows] == [(96.0, 109.0), (196.0, 204.0)]
    assert planner.active(92.0) is None
    assert planner.active(93.0) is not None  # 3 s lead before 96
    assert planner.active(150.0) is None
    assert planner.active(205.0) is None
    assert planner.windows == []


def test_robust_spread_reads_gaussian_noise_as_its_sd_and_hardly_sees_a_transient() -> None:
    rng = random.Random(5)
    spread = RobustSpread(300.0)
    window: list[float] = []
    t = 0.0
    for _ in range(1000):
        x = rng.gauss(0.0, 0.02)
        t += 1.0
        spread.append(x, t)
        window = [*window, abs(x)][-300:]
    assert len(spread) == 300
    assert spread.sd == pytest.approx(0.02, rel=0.15)
    ordered = sorted(window)
    assert spread.sd == pytest.approx((ordered[149] + ordered[150]) / 2 / 0.6745)
    quiet = spread.sd
    # A feeder relearning its feed factor after a step: 60 s of a decaying 20 % error.
    signed = [rng.gauss(0.0, 0.02) for _ in range(240)]
    signed += [0.2 * math.exp(-i / 30) + rng.gauss(0.0, 0.02) for i in range(60)]
    for x in signed:
        t += 1.0
        spread.append(x, t)
    mean = sum(signed) / len(signed)
    sd = math.sqrt(sum((x - mean) ** 2 for x in signed) / (len(signed) - 1))
    assert sd > 2.0 * quiet
    assert spread.sd < 1.5 * quiet
    # Tenfold noise for 150 s, half the window: now it shows.
    for _ in range(150):
        t += 1.0
        spread.append(rng.gauss(0.0, 0.2), t)
    assert spread.sd > 2.0 * quiet
    # The window is plant time: readings every 2.5 s, five minutes of noise fill it.
    for _ in range(120):
        t += 2.5
        spread.append(rng.gauss(0.0, 0.06), t)
    assert len(spread) == 120 and spread.sd > 2.0 * quiet


def test_the_feed_factor_curve_follows_the_hopper_and_is_flat_until_it_has_a_span() -> None:
    rng = random.Random(3)
    curve = FeedFactorCurve(time_constant_s=7200.0, min_span_kg=0.3)
    assert curve.at(3.0) is None
    # A hopper at 4.4-4.5 kg: no span yet, the line is the mean.
    for i in range(100):
        curve.update(4.5 - 0.001 * i, 0.05 * (1.0 + rng.gauss(0.0, 0.01)), 1.0)
    flat = curve.at(4.45)
    assert flat is not None and curve.at(1.5) == pytest.approx(flat)
    # Two refill cycles, 4.5 kg down to 1.5 kg: 5 % less feed factor when empty.
    for _ in range(2):
        for i in range(5400):
            hopper = 4.5 - 3.0 * i / 5400
            truth = 0.05 * (1.0 - 0.1 * (1.0 - hopper / 6.0))
            curve.update(hopper, truth * (1.0 + rng.gauss(0.0, 0.01)), 1.0)
    for hopper in (1.5, 3.0, 4.5):
        truth = 0.05 * (1.0 - 0.1 * (1.0 - hopper / 6.0))
        assert curve.at(hopper) == pytest.approx(truth, rel=0.003)


def test_a_sliding_range_keeps_the_lowest_and_highest_of_the_last_readings() -> None:
    rng = random.Random(1)
    for size in (1, 2, 60):
        span = SlidingRange(size)
        window: list[float] = []
        for _ in range(2000):
            x = rng.choice([rng.random(), 0.5])  # ties too
            span.append(x)
            window = [*window, x][-size:]
            assert (span.low, span.high) == (min(window), max(window))
        span.clear()
        assert math.isnan(span.low) and math.isnan(span.high)
