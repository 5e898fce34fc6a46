"""`plant kpi`: score a run, in process (apps/kpi.py) or from what the historian stored.

By default the run is the accelerated in-process closed loop of `apps.campaign` (the twin and
the supervisor stepped together), scored against the twin's ground truth. `--from-influx`
scores a run of the whole stack from InfluxDB instead (apps/stored.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from apps.alarm_kpi import alarm_json, alarm_rows, campaign_alarms
from apps.campaign import run_campaign
from apps.kpi import Kpis, compute
from apps.scenario import STANDARD_CAMPAIGN, ScenarioError, load_scenario
from apps.stored import (
    MAX_NS,
    Source,
    kpi_rows,
    kpis_json,
    parse_instant,
    score,
)
from bridge.historian.influxql import InfluxQueryError, historian_influx
from core.alarm_measures import AlarmMeasures

console = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # an error stays one line


def _number(value: float | None, digits: int) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def kpi_json(
    scores: Kpis,
    *,
    scenario: str,
    seed: int,
    hours: float,
    controlled: bool,
    alarms: AlarmMeasures | None = None,
) -> dict[str, Any]:
    """The scores as one JSON object (no NaN: JSON has none; missing values are null)."""
    return {
        "scenario": scenario,
        "seed": seed,
        "hours": hours,
        "controller": controlled,
        "tablets_made": scores.tablets_made,
        "oos_accepted": scores.oos_accepted,
        "quarantined": scores.quarantined,
        "quarantined_kg": _number(scores.quarantined_kg, 3),
        "oos_quarantined": scores.oos_quarantined,
        "in_spec_pct": _number(scores.in_spec_pct, 3),
        "true_oos_kg": _number(scores.true_oos_kg, 3),
        "diverted_kg": _number(scores.diverted_kg, 3),
        "forced_diverted_kg": _number(scores.forced_diverted_kg, 3),
        "cleaned_out_kg": _number(scores.cleaned_out_kg, 3),
        "diverted_over_true_oos": (
            _number(scores.diverted_kg / scores.true_oos_kg, 3) if scores.true_oos_kg else None
        ),
        "blend_rsd_pct": _number(scores.blend_rsd_pct, 3),
        "acceptance_value": _number(scores.acceptance_value, 2),
        "iae_per_h": scores.iae,
        "detection_rate": _number(scores.detection_rate, 3),
        "mean_detection_delay_s": _number(scores.mean_detection_delay_s, 1),
        "false_alarms_per_h": _number(scores.false_alarms_per_h, 2),
        "detection_delay_s": {
            k: _number(v, 1) if v is not None else None for k, v in scores.detection_delay_s.items()
        },
        **({"alarms": alarm_json(alarms)} if alarms is not None else {}),
    }


def kpi_table(data: dict[str, Any]) -> Table:
    """The scores as a table for people."""
    mode = "controller on" if data["controller"] else "controller off (baseline)"
    table = Table(
        title=f"{data['scenario']}, seed {data['seed']}, {data['hours']:g} h, {mode}",
        show_header=False,
    )
    table.add_column(style="bold")
    table.add_column(justify="right")

    def show(value: Any, unit: str = "") -> str:
        return "n/a" if value is None else f"{value:,}{unit}" if unit else f"{value:,}"

    rows = [
        ("tablets made", show(data["tablets_made"])),
        ("OOS tablets accepted (must be 0)", show(data["oos_accepted"])),
        ("tablets quarantined", show(data["quarantined"])),
        ("  of which OOS", show(data["oos_quarantined"])),
        ("mass quarantined", show(data["quarantined_kg"], " kg")),
        ("in spec", show(data["in_spec_pct"], " %")),
        ("true OOS mass", show(data["true_oos_kg"], " kg")),
        ("diverted on command", show(data["diverted_kg"], " kg")),
        ("diverted / true OOS", show(data["diverted_over_true_oos"])),
        ("diverted by the line itself", show(data["forced_diverted_kg"], " kg")),
        ("cleaned out of an overfull feed frame", show(data["cleaned_out_kg"], " kg")),
        ("blend RSD (released)", show(data["blend_rsd_pct"], " %")),
        ("acceptance value (USP <905>)", show(data["acceptance_value"])),
        ("detection rate", show(data["detection_rate"])),
        ("mean detection delay", show(data["mean_detection_delay_s"], " s")),
        ("false alarms", show(data["false_alarms_per_h"], " /h")),
    ]
    rows += [(f"IAE {loop}", f"{value:,} /h") for loop, value in data["iae_per_h"].items()]
    rows += [
        (f"detected {fault}", "missed" if delay is None else f"after {delay:g} s")
        for fault, delay in data["detection_delay_s"].items()
    ]
    alarms = data.get("alarms")
    if alarms is not None:
        rows += alarm_rows(alarms, show, unacknowledged="no operator in a campaign")
    for name, value in rows:
        table.add_row(name, value)
    return table


def kpi(
    scenario: Annotated[
        Path, typer.Option(help="Scenario YAML.", show_default="the standard campaign")
    ] = STANDARD_CAMPAIGN,
    seed: Annotated[int | None, typer.Option(help="Seed; default: the scenario's.")] = None,
    controller: Annotated[
        bool,
        typer.Option("--controller/--no-controller", help="Supervisory controller on, or off."),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead.")] = False,
    from_influx: Annotated[
        bool, typer.Option("--from-influx", help="Score a run of the stack from InfluxDB.")
    ] = False,
    url: Annotated[
        str | None,
        typer.Option(help="--from-influx: InfluxDB's URL (default: PLANT_HISTORIAN_INFLUX_URL)."),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(help="--from-influx: database or bucket (default: the historian's)."),
    ] = None,
    site: Annotated[str, typer.Option(help="--from-influx: the site to score.")] = "site1",
    begin: Annotated[
        str | None,
        typer.Option("--from", help="--from-influx: from this source time (ISO 8601, UTC)."),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--to", help="--from-influx: up to this source time (ISO 8601, UTC)."),
    ] = None,
) -> None:
    """Score a scenario run in process (twin and controller together, accelerated).

    The run scores against the twin's ground truth: OOS tablets accepted, diverted against true
    OOS mass, blend RSD, acceptance value, loop IAE, and fault detection. Run it with
    --no-controller and the same seed for the baseline. With --from-influx it scores a run of
    the whole stack from what the historian stored (default: all of it): OOS released and
    quarantined, diverted against true OOS mass, in-spec share, detection delays, controller
    actions and data completeness.
    """
    if from_influx:
        _from_influx(url, db, site, begin, end, as_json)
        return
    try:
        loaded = load_scenario(scenario)
    except ScenarioError as error:
        err.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None
    with err.status(f"running {loaded.name} ({loaded.hours:g} h of plant time)"):
        result = run_campaign(loaded, controlled=controller, seed=seed)
    scores = compute(
        result.plant.ledger,
        result.plant.faults(include_ended=True),
        result.log.alarms,
        loaded.hours,
    )
    data = kpi_json(
        scores,
        scenario=loaded.name,
        seed=loaded.seed if seed is None else seed,
        hours=loaded.hours,
        controlled=controller,
        alarms=campaign_alarms(result.alarm_transitions, loaded.hours),
    )
    if as_json:
        print(json.dumps(data))
    else:
        console.print(kpi_table(data))


def _from_influx(
    given_url: str | None,
    given_db: str | None,
    site: str,
    begin: str | None,
    end: str | None,
    as_json: bool,
) -> None:
    try:
        url, db, token = historian_influx(given_url, given_db)
        source = Source(
            url,
            db,
            site,
            token,
            parse_instant(begin, "--from") if begin else 0,
            parse_instant(end, "--to") if end else MAX_NS,
        )
        data = kpis_json(score(source))
    except (ValueError, InfluxQueryError) as error:
        err.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None
    if data["tablets_made"] == 0 and data["samples_stored"] == 0:
        err.print(f"[red]error:[/] InfluxDB at {url} holds nothing of {site!r} in {db!r}")
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(data))
        return
    title = f"{site} from InfluxDB {url} ({db}), {data['hours']:g} h"
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for name, value in kpi_rows(data):
        table.add_row(name, value)
    console.print(table)
