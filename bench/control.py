"""How well the supervisory controller does: fault campaigns, controller on and off.

Both runs of a campaign use the same seed, the same faults at the same times and the same
operator policy; only the controller differs. Scores come from the twin's ground truth.

    python -m bench.control [--seed 1] [--scenario scenarios/standard_campaign.yaml]
    python -m bench.control --random K
    python -m bench.control --random K --link 2.5:2.5:5   # the running stack's timing

With `--random K` it runs the standard campaign and K random ones (`plant campaign random`,
seeds 1..K, every second one compound) and prints a table per campaign and the totals against
the goals: no OOS tablet released, diverted mass at most 1.5x the true OOS mass in total and 3x
in any campaign, detection rate at least 0.95 on the faults detectable at their magnitude,
at most one false alarm per hour. The last line is one JSON object either way. `quar` counts
the OOS tablets quarantined (held back after they reached accept: not released), `q kg` all the
mass quarantined, good tablets included. Held tablets are not diverted and are not in the
ratio, which the goals define on diverted mass; they are a cost all the same (QA tests or
scraps them), so they are shown beside it.

The controller's rules were worked out on random campaigns: 1-90, and 109, 118, 146, 202,
392, 432, 447, 512, 532 and 618 since (its comments cite them by number; 91-450 were looked at
for failures). Those show how well it does on the cases it was shaped on, not on new ones. For
campaigns it has never seen, take seeds above 750, such as `--only 751..810` (451-630 have
been looked at for failures since, and 631-750 once: no OOS tablet released, 685 and 738
compound above 3x).

`--link PUBLISH:LAG:LATENCY` (plant seconds) runs the closed loop as the running stack times it
(`apps.closed_loop.Link`): a decision per publication, on telemetry that is late, with commands
that land later still. `--only 6,15` (or `--only 31..60`) runs just those random campaigns
(every even seed compound, as in `--random`).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from typing import Any

from apps.campaign import run_campaign
from apps.closed_loop import Link
from apps.kpi import Kpis, compute
from apps.random_campaign import RandomCampaign, random_campaign
from apps.scenario import STANDARD_CAMPAIGN, Scenario, load_scenario

MAX_DIVERTED_RATIO_TOTAL = 1.5
MAX_DIVERTED_RATIO_CAMPAIGN = 3.0
MIN_DETECTION_RATE = 0.95
MAX_FALSE_ALARMS_PER_H = 1.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """One campaign, controller on and off."""

    name: str
    seed: int
    hours: float
    on: Kpis
    off: Kpis
    detected: int  # detectable faults detected
    detectable: int  # faults detectable at their magnitude
    missed: tuple[str, ...]  # detectable faults never detected, "kind@onset"
    wall_s: float  # both runs

    @property
    def ratio(self) -> float:
        if self.on.true_oos_kg > 0:
            return self.on.diverted_kg / self.on.true_oos_kg
        return math.inf if self.on.diverted_kg > 0.01 else 0.0

    @property
    def delays(self) -> list[float]:
        return [d for d in self.on.detection_delay_s.values() if d is not None]


def run_one(
    scenario: Scenario,
    seed: int | None,
    campaign: RandomCampaign | None = None,
    link: Link | None = None,
) -> Outcome:
    """Run `scenario` with and without the controller; a random `campaign` says which faults
    count for the detection rate (all, when None)."""
    scores = {}
    start = time.perf_counter()
    counted: dict[str, float | None] = {}
    for controlled in (True, False):
        result = run_campaign(scenario, controlled=controlled, seed=seed, link=link)
        scores[controlled] = kpis = compute(
            result.plant.ledger,
            result.plant.faults(include_ended=True),
            result.log.alarms,
            scenario.hours,
        )
        if controlled:
            delays = kpis.detection_delay_s
            counted = campaign.scored(delays, result.plant.ledger) if campaign else dict(delays)
    wall = time.perf_counter() - start
    on = scores[True]
    return Outcome(
        name=scenario.name,
        seed=scenario.seed if seed is None else seed,
        hours=scenario.hours,
        on=on,
        off=scores[False],
        detected=sum(d is not None for d in counted.values()),
        detectable=len(counted),
        missed=tuple(sorted(key for key, delay in counted.items() if delay is None)),
        wall_s=wall,
    )


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def standard_json(o: Outcome) -> dict[str, Any]:
    """The standard campaign's figures, as `python -m bench.control` has always printed them."""
    on, off = o.on, o.off
    return {
        "scenario": o.name,
        "seed": o.seed,
        "hours": o.hours,
        "oos_accepted": on.oos_accepted,
        "baseline_oos_accepted": off.oos_accepted,
        "diverted_kg": round(on.diverted_kg, 3),
        "true_oos_kg": round(on.true_oos_kg, 3),
        "diverted_over_true_oos": (
            round(on.diverted_kg / on.true_oos_kg, 3) if on.true_oos_kg else None
        ),
        "in_spec_pct": round(on.in_spec_pct, 3),
        "baseline_in_spec_pct": round(off.in_spec_pct, 3),
        "mean_detection_delay_s": _r(on.mean_detection_delay_s, 1),
        "detection_rate": round(on.detection_rate, 3),
        "false_alarms_per_h": round(on.false_alarms_per_h, 2),
        "acceptance_value": round(on.acceptance_value, 2),
        "baseline_acceptance_value": round(off.acceptance_value, 2),
        "blend_rsd_pct": round(on.blend_rsd_pct, 2),
        "iae_per_h": on.iae,
        "baseline_iae_per_h": off.iae,
        "detection_delay_s": on.detection_delay_s,
        "wall_s": round(o.wall_s, 1),
    }


def campaign_row(o: Outcome) -> dict[str, Any]:
    on, off = o.on, o.off
    return {
        "campaign": o.name,
        "oos_released": on.oos_accepted,
        "baseline_oos_released": off.oos_accepted,
        "oos_quarantined": on.oos_quarantined,
        "quarantined_kg": round(on.quarantined_kg, 3),
        "diverted_kg": round(on.diverted_kg, 3),
        "true_oos_kg": round(on.true_oos_kg, 3),
        "diverted_over_true_oos": _r(o.ratio, 2),
        "in_spec_pct": round(on.in_spec_pct, 2),
        "baseline_in_spec_pct": round(off.in_spec_pct, 2),
        "detected": o.detected,
        "detectable": o.detectable,
        "mean_detection_delay_s": _r(sum(o.delays) / len(o.delays), 0) if o.delays else None,
        "max_detection_delay_s": _r(max(o.delays), 0) if o.delays else None,
        "false_alarms_per_h": round(on.false_alarms_per_h, 2),
        "wall_s": round(o.wall_s, 1),
        "missed": list(o.missed),
    }


def totals(outcomes: list[Outcome], wall_s: float) -> dict[str, Any]:
    diverted = sum(o.on.diverted_kg for o in outcomes)
    true_oos = sum(o.on.true_oos_kg for o in outcomes)
    hours = sum(o.hours for o in outcomes)
    detected = sum(o.detected for o in outcomes)
    detectable = sum(o.detectable for o in outcomes)
    delays = [d for o in outcomes for d in o.delays]
    false_alarms = sum(o.on.false_alarms_per_h * o.hours for o in outcomes)
    ratio = diverted / true_oos if true_oos else math.inf
    worst = max(outcomes, key=lambda o: o.ratio)
    plant_h_run = 2 * hours
    goals = {
        "no_oos_released": all(o.on.oos_accepted == 0 for o in outcomes),
        "diverted_total_le_1.5x": ratio <= MAX_DIVERTED_RATIO_TOTAL,
        "diverted_each_le_3x": worst.ratio <= MAX_DIVERTED_RATIO_CAMPAIGN,
        "detection_each_ge_0.95": all(
            o.detected >= MIN_DETECTION_RATE * o.detectable for o in outcomes
        ),
        "false_alarms_each_le_1_per_h": all(
            o.on.false_alarms_per_h <= MAX_FALSE_ALARMS_PER_H for o in outcomes
        ),
    }
    return {
        "campaigns": len(outcomes),
        "plant_hours": hours,
        "oos_released": sum(o.on.oos_accepted for o in outcomes),
        "baseline_oos_released": sum(o.off.oos_accepted for o in outcomes),
        "oos_quarantined": sum(o.on.oos_quarantined for o in outcomes),
        "quarantined_kg": round(sum(o.on.quarantined_kg for o in outcomes), 3),
        "diverted_kg": round(diverted, 3),
        "true_oos_kg": round(true_oos, 3),
        "diverted_over_true_oos": _r(ratio, 3),
        "worst_campaign_ratio": _r(worst.ratio, 2),
        "worst_campaign": worst.name,
        "in_spec_pct": round(sum(o.on.in_spec_pct * o.hours for o in outcomes) / hours, 3),
        "baseline_in_spec_pct": round(
            sum(o.off.in_spec_pct * o.hours for o in outcomes) / hours, 3
        ),
        "detection_rate": _r(detected / detectable if detectable else 1.0, 3),
        "detected": detected,
        "detectable": detectable,
        "mean_detection_delay_s": _r(sum(delays) / len(delays), 1) if delays else None,
        "false_alarms_per_h": round(false_alarms / hours, 2),
        "worst_false_alarms_per_h": max(round(o.on.false_alarms_per_h, 2) for o in outcomes),
        "goals_met": goals,
        "wall_s": round(wall_s, 1),
        "speed_x_real_time": round(plant_h_run * 3600 / wall_s) if wall_s else None,
    }


def _print_head() -> None:
    head = (
        f"{'campaign':<28} {'released':>8} {'base':>6} {'quar':>5} {'q kg':>5} {'div kg':>7} "
        f"{'oos kg':>7} "
        f"{'ratio':>6} {'in spec':>7} {'base':>6} {'det':>6} {'delay':>6} {'FA/h':>5} "
        f"{'wall s':>6}  missed"
    )
    print(head)


def _print_rows(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        ratio = r["diverted_over_true_oos"]
        delay = r["mean_detection_delay_s"]
        print(
            f"{r['campaign']:<28} {r['oos_released']:>8} {r['baseline_oos_released']:>6} "
            f"{r['oos_quarantined']:>5} {r['quarantined_kg']:>5.2f} {r['diverted_kg']:>7.2f} "
            f"{r['true_oos_kg']:>7.2f} "
            f"{'inf' if ratio is None else f'{ratio:.2f}':>6} {r['in_spec_pct']:>7.2f} "
            f"{r['baseline_in_spec_pct']:>6.2f} {r['detected']:>3}/{r['detectable']:<2} "
            f"{'-' if delay is None else f'{delay:.0f}':>6} {r['false_alarms_per_h']:>5.2f} "
            f"{r['wall_s']:>6.1f}  {' '.join(r['missed'])}",
            flush=True,
        )


def campaign_count(text: str) -> int:
    """`--random K`: a whole number, 0 or more."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if count < 0:
        raise argparse.ArgumentTypeError(f"cannot run {count} campaigns")
    return count


def seed_list(text: str) -> list[int]:
    """`--only 6,15,31..60`: seeds, and inclusive ranges of them, comma-separated."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        low, _, high = part.partition("..")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not a seed or a range of seeds (6, 31..60): {part!r}"
            ) from None
        if last < first:
            raise argparse.ArgumentTypeError(f"an empty range of seeds: {part!r}")
        seeds.extend(range(first, last + 1))
    if not seeds:
        raise argparse.ArgumentTypeError("no seeds given (6,15 or 31..60)")
    return seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--scenario", default=str(STANDARD_CAMPAIGN))
    parser.add_argument(
        "--random", type=campaign_count, default=0, metavar="K", help="K random campaigns too"
    )
    parser.add_argument(
        "--first-seed", type=int, default=1, help="seed of the first random campaign"
    )
    parser.add_argument("--link", type=Link.parse, default=None, metavar="PUBLISH:LAG:LATENCY")
    parser.add_argument(
        "--only",
        type=seed_list,
        default=[],
        metavar="SEEDS",
        help="these random campaigns only: 6,15 or 31..60",
    )
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    link = args.link
    if not args.random and not args.only:
        print(json.dumps(standard_json(run_one(scenario, args.seed, link=link))))
        return
    start = time.perf_counter()
    outcomes, rows = [], []
    _print_head()
    if not args.only:
        outcomes.append(run_one(scenario, args.seed, link=link))
        rows.append(campaign_row(outcomes[0]))
        _print_rows(rows)
    picked = args.only or [args.first_seed + i for i in range(args.random)]
    for seed in picked:
        campaign = random_campaign(seed, compound=(seed - args.first_seed) % 2 == 1)
        outcome = run_one(campaign.scenario, None, campaign, link=link)
        outcomes.append(outcome)
        rows.append(campaign_row(outcome))
        _print_rows(rows[-1:])
    total = totals(outcomes, time.perf_counter() - start)
    print("total: " + " ".join(f"{k}={v}" for k, v in total.items() if k != "goals_met"))
    print("goals: " + " ".join(f"{k}={v}" for k, v in total["goals_met"].items()))
    print(json.dumps({"campaigns": rows, "total": total}))


if __name__ == "__main__":
    main()
