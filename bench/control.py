"""How well the supervisory controller does: the standard campaign, controller on and off.

Both runs use the same seed, the same faults at the same times and the same operator policy;
only the controller differs. Scores come from the twin's ground truth.

    python -m bench.control [--seed 1] [--scenario scenarios/standard_campaign.yaml]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from plant.campaign import run_campaign
from plant.kpi import compute
from plant.scenario import STANDARD_CAMPAIGN, load_scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--scenario", default=str(STANDARD_CAMPAIGN))
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    scores = {}
    walls = {}
    for controlled in (True, False):
        start = time.perf_counter()
        result = run_campaign(scenario, controlled=controlled, seed=args.seed)
        walls[controlled] = time.perf_counter() - start
        scores[controlled] = compute(
            result.plant.ledger,
            result.plant.faults(include_ended=True),
            result.log.alarms,
            scenario.hours,
        )
    on, off = scores[True], scores[False]
    out: dict[str, Any] = {
        "scenario": scenario.name,
        "seed": scenario.seed if args.seed is None else args.seed,
        "hours": scenario.hours,
        "oos_accepted": on.oos_accepted,
        "baseline_oos_accepted": off.oos_accepted,
        "diverted_kg": round(on.diverted_kg, 3),
        "true_oos_kg": round(on.true_oos_kg, 3),
        "diverted_over_true_oos": (
            round(on.diverted_kg / on.true_oos_kg, 3) if on.true_oos_kg else None
        ),
        "in_spec_pct": round(on.in_spec_pct, 3),
        "baseline_in_spec_pct": round(off.in_spec_pct, 3),
        "mean_detection_delay_s": (
            round(on.mean_detection_delay_s, 1) if on.mean_detection_delay_s is not None else None
        ),
        "detection_rate": round(on.detection_rate, 3),
        "false_alarms_per_h": round(on.false_alarms_per_h, 2),
        "acceptance_value": round(on.acceptance_value, 2),
        "baseline_acceptance_value": round(off.acceptance_value, 2),
        "blend_rsd_pct": round(on.blend_rsd_pct, 2),
        "iae_per_h": on.iae,
        "baseline_iae_per_h": off.iae,
        "detection_delay_s": on.detection_delay_s,
        "wall_s": round(walls[True] + walls[False], 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
