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


CATALOGUE: dict[str, FaultType] = {
    f.kind: f
    for f in (
        FaultType(
            number=1,
            kind="refill_disturbance",
            title="Feeder refill disturbance",
            target_type="feeder",
            default_target="api_feeder",
            magnitude_unit="fraction",
            magnitude_meaning="extra feed-factor jump after the refill it forces now",
            default_magnitude=0.15,
            low=0.0,
            high=1.0,
            shows_as="volumetric mode, flow spike; NIR bump one RTD later",
            response="divert the predicted window",
        ),
        FaultType(
            number=2,
            kind="feed_factor_drift",
            title="Feed-factor drift (bulk density change)",
            target_type="feeder",
            default_target="api_feeder",
            magnitude_unit="1/h",
            magnitude_meaning="fractional change of the true feed factor per hour",
            default_magnitude=-0.2,
            low=-1.0,
            high=1.0,
            shows_as="drive command creeps for the same flow",
            response="alarm; feedforward on drive",
        ),
        FaultType(
            number=3,
            kind="bridging",
            title="Feeder bridging / rat-holing",
            target_type="feeder",
            default_target="api_feeder",
            magnitude_unit="fraction",
            magnitude_meaning="share of the screw's output lost",
            default_magnitude=0.8,
            low=0.0,
            high=1.0,
            shows_as="flow falls toward zero, drive saturates",
            response="divert; stop the line if not recovered",
        ),
        FaultType(
            number=4,
            kind="feeder_noise",
            title="Feeder noise increase",
            target_type="feeder",
            default_target="excipient_feeder",
            magnitude_unit="x",
            magnitude_meaning="multiplier on the flow's short-term noise",
            default_magnitude=2.0,
            low=1.0,
            high=20.0,
            shows_as="flow RSD rises, NIR variance rises",
            response="widen diversion margin; alarm",
        ),
        FaultType(
            number=5,
            kind="load_cell_drift",
            title="Feeder load-cell drift",
            target_type="feeder",
            default_target="api_feeder",
            magnitude_unit="fraction",
            magnitude_meaning="bias of the reported flow, as a fraction of the setpoint",
            default_magnitude=0.1,
            low=-0.5,
            high=0.5,
            shows_as="reported flow biased, true flow differs",
            response="detect by reconciling with NIR and press rate",
        ),
        FaultType(
            number=6,
            kind="impeller_slowdown",
            title="Blender impeller slowdown",
            target_type="blender",
            default_target="blender",
            magnitude_unit="fraction",
            magnitude_meaning="share of impeller speed lost",
            default_magnitude=0.4,
            low=0.0,
            high=0.9,
            shows_as="hold-up and residence time rise",
            response="update RTD model; restore speed",
        ),
        FaultType(
            number=7,
            kind="nir_bias",
            title="NIR fouling / calibration bias",
            target_type="nir",
            default_target="nir",
            magnitude_unit="% w/w",
            magnitude_meaning="offset added to every prediction",
            default_magnitude=0.8,
            low=-5.0,
            high=5.0,
            shows_as="API reading offset, normal variance",
            response="detect by reconciliation; do not trim feeders on it",
        ),
        FaultType(
            number=8,
            kind="nir_dropout",
            title="NIR dropout / outliers",
            target_type="nir",
            default_target="nir",
            magnitude_unit="probability",
            magnitude_meaning="chance that a spectrum is lost or spiky",
            default_magnitude=0.3,
            low=0.0,
            high=1.0,
            shows_as="stale or spiky readings, quality Bad",
            response="robust estimator; fall back to feeder-ratio estimate",
        ),
        FaultType(
            number=9,
            kind="lot_density_change",
            title="Incoming lot density change",
            target_type="feeder",
            default_target="excipient_feeder",
            magnitude_unit="fraction",
            magnitude_meaning="change of the material's bulk density",
            default_magnitude=0.06,
            low=-0.3,
            high=0.3,
            shows_as="weight and force shift at fixed fill depth",
            response="weight loop trims fill depth",
        ),
        FaultType(
            number=10,
            kind="punch_wear",
            title="Punch wear",
            target_type="press",
            default_target="press",
            magnitude_unit="mm/h",
            magnitude_meaning="growth of the punch gap per hour",
            default_magnitude=0.05,
            low=0.0,
            high=2.0,
            shows_as="slow drift of thickness and hardness",
            response="compensate; maintenance alarm",
        ),
        FaultType(
            number=11,
            kind="fill_depth_stiction",
            title="Fill-depth actuator stiction",
            target_type="press",
            default_target="press",
            magnitude_unit="mm",
            magnitude_meaning="stick-slip band of the actuator",
            default_magnitude=0.08,
            low=0.0,
            high=1.0,
            shows_as="fill depth sticks then jumps; weight limit-cycles under control",
            response="detect oscillation; compensate",
        ),
        FaultType(
            number=12,
            kind="turret_speed_step",
            title="Turret speed step",
            target_type="press",
            default_target="press",
            magnitude_unit="rpm",
            magnitude_meaning="offset of the turret speed from its setpoint",
            default_magnitude=2.0,
            low=-10.0,
            high=10.0,
            shows_as="throughput mismatch, hopper level drifts",
            response="rebalance feed rate",
        ),
        FaultType(
            number=13,
            kind="diverter_stuck",
            title="Diverter stuck",
            target_type="diverter",
            default_target="diverter",
            magnitude_unit="",
            magnitude_meaning="ignored: the gate freezes where it is",
            default_magnitude=1.0,
            low=0.0,
            high=1.0,
            shows_as="OOS flagged but not diverted",
            response="stop the line; flag the window in genealogy",
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
