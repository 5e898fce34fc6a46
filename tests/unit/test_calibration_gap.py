"""A probe off by less than anyone can detect, and a refill's dip the feeders do not see.

A +0.2 % w/w NIR bias (2 % LC) is under every test of the probe (`apps.random_campaign`
rates it undetectable) and under the fail-safe's limit. The content loop then holds the
probe at target, the blend 2 % LC under it; an ordinary excipient refill, whose densified flow
the refilling feeder's volumetric estimate does not see, takes the blend under 95 % LC, and
the probe reads it at 97 and the feeders at 96.5 (random campaign 532, outside the seeds the
rules were worked out on: 266 tablets released). The gap that lasted before the refill is the
evidence: the probe read on the feeders' calibration is a second opinion.
"""

from __future__ import annotations

from apps.closed_loop import run
from controller import ControllerConfig, Supervisor
from core.faults import FaultSpec
from twin import Plant


def test_a_refills_dip_under_an_undetectable_probe_bias_is_diverted() -> None:
    plant = Plant(seed=3, warm_start=True)
    plant.inject(FaultSpec("nir_bias", magnitude=0.2, duration_s=900, onset_s=300))
    plant.modules["excipient_feeder"].hopper = 12.0  # near its refill level: refills at 438 s
    supervisor = Supervisor()
    run(plant, supervisor, 900.0)
    ledger = plant.ledger
    dipped = [s for s in ledger.slices if s.oos]
    # The excipient refilled: the blend dipped under 95 % LC ...
    assert dipped and all(s.content_pct < 95.0 for s in dipped)
    refills = [e.time for e in plant.events if e.kind == "refill"]
    assert refills and all(
        e.module == "excipient_feeder" for e in plant.events if e.kind == "refill"
    )
    # ... unseen by the probe's own tests, and none of it released
    assert not supervisor.blend.nir_suspect
    assert ledger.oos_accepted_tablets == 0


def _judged(calibration: float | None, nir: float, *, refill_ago_s: float = 60.0) -> float | None:
    """The concentration judged by, with the probe at `nir` % w/w and the feeders 0.05 under
    it, a refill `refill_ago_s` ago that began with the reconciliation at `calibration`."""
    blend = Supervisor(ControllerConfig()).blend
    blend.nir_value, blend.feeders_value = nir, nir - 0.05
    blend.gap_before_refill = calibration
    blend.tel.newest = 1000.0  # the telemetry's newest source time
    blend.last_refill = blend.tel.newest - refill_ago_s
    return blend.trusted()[0]


def test_in_a_refills_window_the_probe_less_the_calibration_gap_judges_where_worse() -> None:
    # The probe reads 9.6 % w/w, 0.2 above the feeders before the refill: judged at 9.4
    assert _judged(0.2, 9.6) == 9.6 - 0.2
    # Near the other limit the probe itself is the worse opinion
    assert _judged(0.2, 10.4) == 10.4
    # A gap within the two estimates' own agreement changes nothing
    assert _judged(0.05, 9.6) == 9.6
    assert _judged(None, 9.6) == 9.6
    # Nor, outside a refill's window, does any: the feeders see what moves the blend there
    window = ControllerConfig().refill_window_s
    assert _judged(0.2, 9.6, refill_ago_s=window + 1.0) == 9.6


def test_the_gap_kept_at_a_refill_is_a_calibration_only() -> None:
    blend = Supervisor(ControllerConfig()).blend
    blend.disagreement.value = 0.2
    blend._refill_begins()
    assert blend.gap_before_refill == 0.2
    blend.suspect_probe(0.2)  # a probe found off: the gap is its offset
    blend._refill_begins()
    assert blend.gap_before_refill is None
    blend.suspect_probe(None)
    blend.starting = True  # a start-up's transient
    blend._refill_begins()
    assert blend.gap_before_refill is None
    blend.starting = False
    # A noisy feeder: the averaged gap is its noise (random campaign 16 compound)
    blend.conds.update(1000.0, "feeder_noise:excipient_feeder", True, 0.0, "noisy")
    blend._refill_begins()
    assert blend.gap_before_refill is None
    blend.conds.update(1000.0, "feeder_noise:excipient_feeder", False, 0.0, "noisy")
    blend._refill_begins()
    assert blend.gap_before_refill == 0.2
    # A gap beyond the fail-safe's limit is a fault it judges, not a calibration
    blend.disagreement.value = 1.47
    blend._refill_begins()
    assert blend.gap_before_refill is None
