"""`plant campaign random`: write a seeded random fault campaign as a scenario file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from apps.random_campaign import random_campaign, to_yaml

app = typer.Typer(help="Fault campaigns: scenarios drawn at random.", no_args_is_help=True)
err = Console(stderr=True, highlight=False, width=160)


@app.command("random")
def random_command(
    seed: Annotated[int, typer.Option(help="Seed of the draw (and of the plant's noise).")],
    compound: Annotated[
        bool, typer.Option("--compound", help="Faults in overlapping pairs, two sensors at once.")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Scenario file to write (default stdout).")
    ] = None,
) -> None:
    """Every physical fault once, magnitudes drawn across the catalogue's ranges, random onsets
    and durations; says which faults are detectable at their magnitude, and why (on stderr)."""
    campaign = random_campaign(seed, compound=compound)
    text = to_yaml(campaign)
    if output is None:
        typer.echo(text, nl=False)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as error:
            err.print(f"[red]error:[/] cannot write {output}: {error.strerror}")
            raise typer.Exit(2) from None
    table = Table("onset", "fault", "magnitude", "duration", "detectable", "why")
    for fault in campaign.faults:
        table.add_row(
            f"{fault.onset_s:.0f} s",
            fault.kind,
            f"{fault.magnitude:g}",
            f"{fault.duration_s:.0f} s" if fault.duration_s else "until cleared",
            "yes" if fault.detectable else "no",
            fault.why,
        )
    err.print(table)
