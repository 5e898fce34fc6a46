"""Every model parameter of the twin, with its unit and where its value comes from.

One dataclass per module type. A layout file (`core/layouts/*.toml`) picks the modules of a pod
and may override any field by name; values not overridden come from here. Figures marked (est.)
are engineering estimates; the others cite the literature named in `shared/domain.md`.

Fields listed in a class's `VARY` are the ones that differ from one site's equipment to
another's (see `core.layout.vary_for_site`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class FeederParams:
    """Loss-in-weight feeder (Engisch & Muzzio 2015)."""

    material: str = "api"  # component this feeder meters; "api" is the active ingredient
    flow_sp_kgh: float = 2.0  # kg/h, initial mass flow setpoint
    max_flow_kgh: float = 5.0  # kg/h, top of the feeder's range
    feed_factor_kgh_pct: float = 0.05  # kg/h per % drive with a full hopper (est.)
    feed_factor_fill_loss: float = 0.10  # fractional feed-factor loss from full to empty (est.)
    flow_rsd: float = 0.02  # short-term relative SD of the true flow (est.)
    noise_corr_s: float = 10.0  # s, correlation time of the flow noise (est.)
    hopper_capacity_kg: float = 6.0  # kg
    hopper_start_kg: float = 4.5  # kg in the hopper at start
    refill_level_kg: float = 1.5  # kg, refill starts below this
    refill_target_kg: float = 4.5  # kg, refill stops above this
    refill_time_s: float = 20.0  # s, duration of a refill (10-30 s)
    refill_densification: float = 0.04  # fractional feed-factor rise right after a refill (est.)
    densification_decay_s: float = 60.0  # s, decay of that rise (est.)
    volumetric_hold_s: float = 10.0  # s in volumetric mode after a refill ends (est.)
    feed_factor_learn_s: float = 30.0  # s, time constant of the feed-factor estimate (est.)
    pv_filter_s: float = 3.0  # s, filter on the loss-in-weight flow (est.)
    pv_noise_rsd: float = 0.003  # relative SD of the reported flow's own noise (est.)
    bulk_density_g_cm3: float = 0.35  # g/cm3, bulk density of the material (est.)
    load_cell_ramp_s: float = 300.0  # s for a load-cell drift to reach its full bias (est.)

    VARY: ClassVar[tuple[str, ...]] = ("feed_factor_kgh_pct", "flow_rsd", "refill_densification")


@dataclass(frozen=True, slots=True)
class BlenderParams:
    """Continuous blender as tanks in series (Vanarase & Muzzio 2011).

    Each tank empties through a weir-like law, so steady hold-up is
    `holdup_ref_kg * (F / flow_ref)**flow_exponent * (speed_ref / N)**speed_exponent`
    and the mean residence time is hold-up over throughput.
    """

    speed_sp_rpm: float = 250.0  # rpm, initial impeller speed setpoint
    speed_ref_rpm: float = 250.0  # rpm, speed at which holdup_ref_kg is measured
    flow_ref_kgh: float = 20.0  # kg/h, throughput at which holdup_ref_kg is measured
    holdup_ref_kg: float = 20.0 / 3600.0 * 60.0  # kg: 60 s mean residence time at 20 kg/h
    flow_exponent: float = 0.6  # hold-up grows sublinearly with throughput (est.)
    speed_exponent: float = 0.7  # hold-up falls as speed rises (est.)
    tanks: int = 5  # number of tanks in series, n (3-6)
    speed_time_constant_s: float = 2.0  # s, impeller drive response
    motor_current_idle_a: float = 2.0  # A at no load (est.)
    motor_current_a_per_kg: float = 6.0  # A per kg of hold-up (est.)
    motor_current_a_per_rpm: float = 0.004  # A per rpm (est.)

    VARY: ClassVar[tuple[str, ...]] = ("holdup_ref_kg", "speed_exponent")


@dataclass(frozen=True, slots=True)
class NirParams:
    """NIR probe at the blender outlet (Colon et al. 2014)."""

    period_s: float = 2.0  # s between spectra (est.)
    # % w/w. domain.md quotes a prediction SD of "about 0.5 % w/w"; read here as 0.5 % of the
    # 10 % w/w target (0.5 % of label claim), which is what lets a 95-105 % spec be policed.
    noise_sd_pct_ww: float = 0.05
    min_flow_kgh: float = 1.0  # kg/h, below this the probe sees no moving powder (est.)

    VARY: ClassVar[tuple[str, ...]] = ("noise_sd_pct_ww",)


@dataclass(frozen=True, slots=True)
class FeedFrameParams:
    """Press hopper and feed frame: plug flow, so the delay is level over consumption."""

    start_level_kg: float = 0.25  # kg, the press starts once this much is in (30-60 s of flow)
    max_level_kg: float = 1.0  # kg, the line trips above this (overflow)
    starve_trip_s: float = 15.0  # s the press may run starved before the line trips (est.)
    speed_sp_rpm: float = 30.0  # rpm, paddle speed
    speed_ref_rpm: float = 30.0  # rpm, paddle speed at which fill density is nominal
    overfill_per_rpm: float = 0.001  # fractional die over-fill per rpm above reference (est.)

    VARY: ClassVar[tuple[str, ...]] = ()


@dataclass(frozen=True, slots=True)
class PressParams:
    """Rotary tablet press (Natoli NP-400 ranges, Bachawala 2025; Kawakita; Su et al. 2019)."""

    stations: int = 36  # punch stations on the turret (est.)
    turret_speed_sp_rpm: float = 23.15  # rpm: 36 x 23.15 x 60 = 50,000 tablets/h = 20 kg/h
    min_turret_rpm: float = 11.0  # rpm
    max_turret_rpm: float = 35.0  # rpm
    turret_accel_rpm_s: float = 2.0  # rpm/s
    fill_depth_sp_mm: float = 9.87  # mm, gives 400 mg at the nominal blend density
    min_fill_depth_mm: float = 7.0  # mm
    max_fill_depth_mm: float = 13.0  # mm
    fill_depth_rate_mm_s: float = 0.2  # mm/s, fill-depth actuator speed (est.)
    die_diameter_mm: float = 10.0  # mm, round flat-faced tooling (est.)
    main_gap_sp_mm: float = 3.6  # mm, punch gap at main compression (est.)
    pre_gap_mm: float = 5.0  # mm, punch gap at pre-compression (est.)
    kawakita_a: float = 0.72  # Kawakita a, limiting volume reduction (est.)
    kawakita_b_per_mpa: float = 0.05  # 1/MPa, Kawakita b (est.)
    kawakita_ref_density_g_cm3: float = 0.5162  # g/cm3, density defining Kawakita's V0
    true_density_g_cm3: float = 1.5  # g/cm3, particle density of the blend (est.)
    elastic_recovery: float = 0.11  # fractional thickness recovery after ejection (est.)
    hardness_max_n: float = 400.0  # N at zero porosity (Ryshkewitch-Duckworth)
    hardness_porosity_k: float = 8.0  # Ryshkewitch-Duckworth constant (est.)
    weight_target_mg: float = 400.0  # mg
    api_label_claim_mg: float = 40.0  # mg of API per tablet
    hardness_min_n: float = 70.0  # N, lower hardness limit (est.)
    hardness_max_spec_n: float = 170.0  # N, upper hardness limit (est.)
    weight_tolerance: float = 0.05  # fraction: weight spec is target +- 5 %
    content_low_pct: float = 95.0  # % label claim
    content_high_pct: float = 105.0  # % label claim
    weight_noise_rsd: float = 0.004  # relative SD of the checkweigher reading (est.)
    force_noise_rsd: float = 0.01  # relative SD of the force reading (est.)
    hardness_noise_rsd: float = 0.02  # relative SD of the hardness reading (est.)

    VARY: ClassVar[tuple[str, ...]] = ("kawakita_b_per_mpa", "elastic_recovery")


@dataclass(frozen=True, slots=True)
class DiverterParams:
    """Reject gate after the press."""

    actuation_s: float = 1.0  # s to move between accept and reject

    VARY: ClassVar[tuple[str, ...]] = ()


@dataclass(frozen=True, slots=True)
class EnvironmentParams:
    """Room of the mobile pod: slow Ornstein-Uhlenbeck wander around set conditions."""

    period_s: float = 10.0  # s between readings
    temperature_c: float = 22.0  # degC (20-25)
    temperature_sd_c: float = 0.5  # degC
    humidity_pct: float = 40.0  # %RH (30-50)
    humidity_sd_pct: float = 3.0  # %RH
    diff_pressure_pa: float = 15.0  # Pa
    diff_pressure_sd_pa: float = 1.5  # Pa
    wander_time_s: float = 1800.0  # s, correlation time of the wander

    VARY: ClassVar[tuple[str, ...]] = ("temperature_c", "humidity_pct")


@dataclass(frozen=True, slots=True)
class LineParams:
    """The production state machine."""

    step_s: float = 1.0  # s, integration step of the material-flow models
    startup_divert_s: float = 300.0  # s of start-up material always diverted (about 5 RTD means)
    stop_timeout_s: float = 900.0  # s allowed for the line to empty when stopping
    empty_kg: float = 0.001  # kg, hold-up under which a module counts as empty

    VARY: ClassVar[tuple[str, ...]] = ()


PARAMS_BY_TYPE: dict[str, type] = {
    "feeder": FeederParams,
    "blender": BlenderParams,
    "nir": NirParams,
    "feed_frame": FeedFrameParams,
    "press": PressParams,
    "diverter": DiverterParams,
    "environment": EnvironmentParams,
    "line": LineParams,
}
