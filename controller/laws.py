"""Control laws: small pure functions from measurements to the next setpoint.

Each returns the new setpoint, or None when the loop should leave it alone (inside its deadband
or its change too small to be worth a command and an audit record). Every limit comes from
`ControllerConfig`, where its reason is written.
"""

from __future__ import annotations


def clamp(value: float, low: float, high: float) -> float:
    # max(low, min(high, value)) by comparison, as in `Supervisor.step` (which says why)
    below = value if value < high else high
    return below if below > low else low


def weight_trim(
    fill_depth_sp: float,
    weight_mg: float,
    target_mg: float,
    gain_mm_per_mg: float,
    deadband_mg: float,
    *,
    low: float,
    high: float,
    max_step_mm: float,
    min_step_mm: float,
) -> float | None:
    """L1 weight loop: integral action on fill depth from the checkweigher."""
    error = target_mg - weight_mg
    if abs(error) <= deadband_mg:
        return None
    step = clamp(gain_mm_per_mg * error, -max_step_mm, max_step_mm)
    new = clamp(fill_depth_sp + step, low, high)
    return new if abs(new - fill_depth_sp) >= min_step_mm else None


def turret_speed(
    total_feed_kgh: float,
    weight_mg: float,
    stations: int,
    level_kg: float,
    level_sp_kg: float,
    level_gain: float,
    *,
    low: float,
    high: float,
) -> float:
    """L1 rate loop: press consumption matched to the feed, trimmed to hold the hopper level."""
    tablets_per_h = total_feed_kgh / (weight_mg * 1e-6)
    feedforward = tablets_per_h / (stations * 60.0)
    return clamp(feedforward * (1.0 + level_gain * (level_kg - level_sp_kg)), low, high)


def concentration_trim(
    api_sp_kgh: float,
    total_sp_kgh: float,
    concentration_pct: float,
    target_pct: float,
    gain: float,
    deadband_pct: float,
    *,
    max_step: float,
    min_step_kgh: float,
) -> float | None:
    """L2 loop: the API feeder's share of a constant total, corrected toward the target.

    The error is read relative to the target so that a 1 % low blend asks for 1 % more API;
    the caller takes the rest of the total from the other feeders in proportion.
    """
    error = target_pct - concentration_pct
    if abs(error) <= deadband_pct:
        return None
    step = clamp(gain * error / target_pct, -max_step, max_step)
    new = clamp(api_sp_kgh * (1.0 + step), 0.0, total_sp_kgh)
    return new if abs(new - api_sp_kgh) >= min_step_kgh else None


def hardness_trim(
    gap_sp_mm: float,
    hardness_n: float,
    target_n: float,
    gain_mm_per_n: float,
    deadband_n: float,
    *,
    low: float,
    high: float,
    max_step_mm: float,
    min_step_mm: float,
) -> float | None:
    """L1 hardness loop: a softer tablet asks for a tighter punch gap (more compaction)."""
    error = target_n - hardness_n
    if abs(error) <= deadband_n:
        return None
    step = clamp(-gain_mm_per_n * error, -max_step_mm, max_step_mm)
    new = clamp(gap_sp_mm + step, low, high)
    return new if abs(new - gap_sp_mm) >= min_step_mm else None


def speed_restore(
    speed_sp: float, speed_pv: float, nominal: float, maximum: float, *, min_step_rpm: float
) -> float | None:
    """Ask for more impeller speed while the drive falls short of the validated speed."""
    if speed_pv <= 1.0:
        return None  # standing still: a stopped line, or a drive no setpoint would move
    wanted = clamp(speed_sp * nominal / speed_pv, nominal, maximum)
    return wanted if abs(wanted - speed_sp) >= min_step_rpm else None
