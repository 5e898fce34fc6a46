"""`plant simulate`: run the twin accelerated, with faults, and summarise what it made."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from core.commands import LineCommand
from core.faults import CATALOGUE, FaultSpec
from twin import Plant

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|m|h)?\s*$")
_UNITS = {None: 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


class SpecError(ValueError):
    """A command-line value that cannot be understood; the message says what was expected."""


def parse_duration(text: str) -> float:
    """Seconds from `90`, `90s`, `10m` or `1.5h`."""
    match = _DURATION.match(text)
    if not match:
        raise SpecError(f"{text!r} is not a duration (examples: 90, 90s, 10m, 1.5h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_fault(text: str, user: str = "simulate") -> FaultSpec:
    """`KIND[/TARGET]@T:MAGNITUDE:DURATION`, e.g. `bridging@1h:0.8:5m` or
    `feeder_noise/excipient_feeder@30m:3:0` (a duration of 0 lasts to the end)."""
    head, sep, tail = text.partition("@")
    parts = tail.split(":")
    if not sep or len(parts) != 3:
        raise SpecError(f"fault {text!r} is not KIND[/TARGET]@T:MAGNITUDE:DURATION")
    kind, _, target = head.partition("/")
    if kind not in CATALOGUE:
        raise SpecError(f"unknown fault {kind!r}; known: {', '.join(CATALOGUE)}")
    try:
        magnitude = float(parts[1])
    except ValueError:
        raise SpecError(f"fault {text!r}: magnitude {parts[1]!r} is not a number") from None
    return FaultSpec(
        kind=kind,
        target=target or None,
        magnitude=magnitude,
        duration_s=parse_duration(parts[2]),
        onset_s=parse_duration(parts[0]),
        user=user,
        reason="scripted in plant simulate",
    )


@dataclass(frozen=True, slots=True)
class Summary:
    hours: float
    seed: int
    state: str
    tablets_made: int
    tablets_in_spec: int
    tablets_accepted: int
    tablets_diverted: int
    in_spec_pct: float
    true_oos_kg: float
    oos_accepted: int
    diverted_kg: float
    fed_kg: float
    holdup_kg: float
    balance_error_kg: float
    faults: list[str]


def summarise(plant: Plant, hours: float) -> Summary:
    ledger = plant.ledger
    holdup = plant.holdup_kg()
    out = ledger.mass_accepted + ledger.mass_diverted + ledger.mass_quarantined
    faults = [
        f"{f.kind}@{f.target} mag {f.magnitude:g} from {f.onset_s:g} s"
        + (f" to {f.ended_s:g} s" if f.ended_s is not None else " (active)")
        for f in plant.faults(include_ended=True)
    ]
    return Summary(
        hours=hours,
        seed=plant.seed,
        state=plant.state,
        tablets_made=round(ledger.tablets_made),
        tablets_in_spec=round(ledger.tablets_made - ledger.oos_tablets),
        tablets_accepted=round(ledger.tablets_accepted),
        tablets_diverted=round(ledger.tablets_diverted),
        in_spec_pct=ledger.in_spec_pct,
        true_oos_kg=ledger.oos_mass,
        oos_accepted=round(ledger.oos_accepted_tablets),
        diverted_kg=ledger.mass_diverted,
        fed_kg=ledger.total_fed_kg,
        holdup_kg=holdup,
        balance_error_kg=ledger.total_fed_kg - out - holdup,
        faults=faults,
    )


def schedule(plant: Plant, faults: Iterable[FaultSpec]) -> None:
    """Hand the faults to the twin, which validates them; the first refused one is an error."""
    for spec in faults:
        result = plant.inject(spec)
        if not result.accepted:
            raise SpecError(f"fault {spec.kind}: {result.reason}")


def run(
    plant: Plant,
    hours: float,
    faults: Iterable[FaultSpec] = (),
    csv_out: TextIO | None = None,
    sample_s: float = 1.0,
    progress: Callable[[float], None] | None = None,
) -> Summary:
    """Start the line, schedule the faults, run `hours` of plant time, return the summary."""
    schedule(plant, faults)
    if plant.state in ("idle", "stopped"):
        plant.apply(LineCommand("start", user="simulate", reason="plant simulate"))
    end = hours * 3600.0
    writer = None
    tags = list(plant.registry)
    if csv_out is not None:
        writer = csv.writer(csv_out)
        writer.writerow(["time_s", *tags])
    step = sample_s if writer is not None else max(sample_s, 60.0)
    t = plant.now
    while t < end:
        t = min(end, t + step)
        plant.advance(t)
        if writer is not None:
            values = plant.store.values
            writer.writerow([f"{t:g}", *(_cell(values[tag]) for tag in tags)])
        if progress is not None:
            progress(t)
    return summarise(plant, hours)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def write_csv(path: Path) -> TextIO:
    return path.open("w", newline="", encoding="utf-8")
