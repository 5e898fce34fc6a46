"""The fault catalogue of `shared/domain.md`: the physical faults (1-13) the twin can suffer.

Faults 14 (OPC UA link loss) and 15 (broker or historian outage) happen to the pipeline, not to
the plant, and are produced by stopping those servers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FaultType:
    """One kind of fault: what it hits, how big it can be, and what it should look like."""

    number: int
    kind: str
    title: str
    target_type: str
    default_target: str
    magnitude_unit: str
    magnitude_meaning: str
    default_magnitude: float
    low: float
    high: float
    shows_as: str
    response: str


def _ft(*args: object) -> FaultType:
    return FaultType(*args)  # type: ignore[arg-type]


CATALOGUE: dict[str, FaultType] = {
    f.kind: f
    for f in (
        _ft(
            1,
            "refill_disturbance",
            "Feeder refill disturbance",
            "feeder",
            "api_feeder",
            "fraction",
            "extra feed-factor jump after the refill it forces now",
            0.15,
            0.0,
            1.0,
            "volumetric mode, flow spike; NIR bump one RTD later",
            "divert the predicted window",
        ),
        _ft(
            2,
            "feed_factor_drift",
            "Feed-factor drift (bulk density change)",
            "feeder",
            "api_feeder",
            "1/h",
            "fractional change of the true feed factor per hour",
            -0.2,
            -1.0,
            1.0,
            "drive command creeps for the same flow",
            "alarm; feedforward on drive",
        ),
        _ft(
            3,
            "bridging",
            "Feeder bridging / rat-holing",
            "feeder",
            "api_feeder",
            "fraction",
            "share of the screw's output lost",
            0.8,
            0.0,
            1.0,
            "flow falls toward zero, drive saturates",
            "divert; stop the line if not recovered",
        ),
        _ft(
            4,
            "feeder_noise",
            "Feeder noise increase",
            "feeder",
            "excipient_feeder",
            "x",
            "multiplier on the flow's short-term noise",
            2.0,
            1.0,
            20.0,
            "flow RSD rises, NIR variance rises",
            "widen diversion margin; alarm",
        ),
        _ft(
            5,
            "load_cell_drift",
            "Feeder load-cell drift",
            "feeder",
            "api_feeder",
            "fraction",
            "bias of the reported flow, as a fraction of the setpoint",
            0.1,
            -0.5,
            0.5,
            "reported flow biased, true flow differs",
            "detect by reconciling with NIR and press rate",
        ),
        _ft(
            6,
            "impeller_slowdown",
            "Blender impeller slowdown",
            "blender",
            "blender",
            "fraction",
            "share of impeller speed lost",
            0.4,
            0.0,
            0.9,
            "hold-up and residence time rise",
            "update RTD model; restore speed",
        ),
        _ft(
            7,
            "nir_bias",
            "NIR fouling / calibration bias",
            "nir",
            "nir",
            "% w/w",
            "offset added to every prediction",
            0.8,
            -5.0,
            5.0,
            "API reading offset, normal variance",
            "detect by reconciliation; do not trim feeders on it",
        ),
        _ft(
            8,
            "nir_dropout",
            "NIR dropout / outliers",
            "nir",
            "nir",
            "probability",
            "chance that a spectrum is lost or spiky",
            0.3,
            0.0,
            1.0,
            "stale or spiky readings, quality Bad",
            "robust estimator; fall back to feeder-ratio estimate",
        ),
        _ft(
            9,
            "lot_density_change",
            "Incoming lot density change",
            "feeder",
            "excipient_feeder",
            "fraction",
            "change of the material's bulk density",
            0.06,
            -0.3,
            0.3,
            "weight and force shift at fixed fill depth",
            "weight loop trims fill depth",
        ),
        _ft(
            10,
            "punch_wear",
            "Punch wear",
            "press",
            "press",
            "mm/h",
            "growth of the punch gap per hour",
            0.05,
            0.0,
            2.0,
            "slow drift of thickness and hardness",
            "compensate; maintenance alarm",
        ),
        _ft(
            11,
            "fill_depth_stiction",
            "Fill-depth actuator stiction",
            "press",
            "press",
            "mm",
            "stick-slip band of the actuator",
            0.08,
            0.0,
            1.0,
            "fill depth sticks then jumps; weight limit-cycles under control",
            "detect oscillation; compensate",
        ),
        _ft(
            12,
            "turret_speed_step",
            "Turret speed step",
            "press",
            "press",
            "rpm",
            "offset of the turret speed from its setpoint",
            2.0,
            -10.0,
            10.0,
            "throughput mismatch, hopper level drifts",
            "rebalance feed rate",
        ),
        _ft(
            13,
            "diverter_stuck",
            "Diverter stuck",
            "diverter",
            "diverter",
            "",
            "ignored: the gate freezes where it is",
            1.0,
            0.0,
            1.0,
            "OOS flagged but not diverted",
            "stop the line; flag the window in genealogy",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A request to inject a fault.

    `target` defaults to the catalogue's default module, `magnitude` to its default;
    `duration_s` of 0 means until cleared; `onset_s` of None means now (plant time).
    """

    kind: str
    target: str | None = None
    magnitude: float | None = None
    duration_s: float = 0.0
    onset_s: float | None = None
    user: str = "operator"
    reason: str = ""


@dataclass(slots=True)
class ActiveFault:
    """A fault the twin has accepted: pending (before onset), active, or ended."""

    id: int
    kind: str
    target: str
    magnitude: float
    onset_s: float
    duration_s: float
    user: str
    status: str = "pending"  # pending, active, ended
    ended_s: float | None = None
