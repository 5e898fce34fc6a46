"""The `plant` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table

from apps.alarm_cli import app as alarm_app
from apps.audit_cli import app as audit_app
from apps.campaign_cli import app as campaign_app
from apps.demo import demo
from apps.fault_cli import app as fault_app
from apps.health import app as health_app
from apps.kpi_cli import kpi
from apps.report import report
from apps.simulate import SpecError, Summary, parse_fault, run, schedule, write_csv
from apps.stack import app as stack_app
from bridge.cli import app as bridge_app
from controller.cli import app as controller_app
from core.faults import CATALOGUE
from core.layout import LayoutError
from dashboards.cli import app as grafana_app
from opcua_server.cli import app as opcua_app
from twin import Plant

app = typer.Typer(
    help="Digital twin of a mobile, modular continuous tablet line.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)
app.add_typer(opcua_app, name="opcua")
app.add_typer(bridge_app, name="bridge")
app.add_typer(fault_app, name="fault")
app.add_typer(alarm_app, name="alarm")
app.add_typer(campaign_app, name="campaign")
app.command("kpi")(kpi)
app.command("report")(report)
app.add_typer(controller_app, name="controller")
app.add_typer(health_app, name="health")
app.add_typer(audit_app, name="audit")
app.add_typer(stack_app, name="stack")
app.add_typer(grafana_app, name="grafana")
app.command("demo")(demo)


def fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/] {message}", highlight=False)
    return typer.Exit(2)


@app.command()
def simulate(
    hours: Annotated[float, typer.Option(help="Plant time to simulate, hours.", min=0.0)] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same run.")] = 0,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="KIND[/TARGET]@T:MAGNITUDE:DURATION, e.g. bridging@1h:0.8:5m (repeatable)."
        ),
    ] = None,
    layout: Annotated[str | None, typer.Option(help="Layout file or shipped layout name.")] = None,
    site: Annotated[str, typer.Option(help="Site id.")] = "site1",
    variation: Annotated[float, typer.Option(help="Site equipment variation, 0-0.5.")] = 0.0,
    csv: Annotated[
        Path | None, typer.Option(help="Write the tag history to this CSV file.")
    ] = None,
    sample: Annotated[float, typer.Option(help="CSV sample period, s.", min=0.001)] = 1.0,
) -> None:
    """Run the twin accelerated and print what it made."""
    if hours <= 0:
        raise fail("--hours must be above 0")
    try:
        plant = Plant(layout, seed=seed, site_id=site, variation=variation)
        schedule(plant, [parse_fault(text) for text in fault or []])
        out = write_csv(csv) if csv else None
    except (SpecError, LayoutError, OSError) as error:
        raise fail(str(error)) from None
    try:
        with Progress(
            TextColumn("simulating"),
            BarColumn(),
            TextColumn("{task.description}"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task("", total=hours * 3600.0)

            def progress(t: float) -> None:
                bar.update(task, completed=t, description=f"{t / 3600:.2f} h")

            summary = run(plant, hours, csv_out=out, sample_s=sample, progress=progress)
    finally:
        if out:
            out.close()
    _print_summary(summary)
    if csv:
        console.print(f"tag history: {csv}")


def _print_summary(s: Summary) -> None:
    table = Table(title=f"{s.hours:g} h of plant time, seed {s.seed}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [
        ("line state", s.state),
        ("tablets made", f"{s.tablets_made:,}"),
        ("in spec", f"{s.tablets_in_spec:,} ({s.in_spec_pct:.2f} %)"),
        ("accepted", f"{s.tablets_accepted:,}"),
        ("diverted", f"{s.tablets_diverted:,} ({s.diverted_kg:.3f} kg)"),
        ("true OOS mass", f"{s.true_oos_kg:.3f} kg"),
        ("OOS tablets accepted", f"{s.oos_accepted:,}"),
        (
            "mass balance",
            f"fed {s.fed_kg:.3f} kg, hold-up {s.holdup_kg:.3f} kg, "
            f"error {s.balance_error_kg:.2e} kg",
        ),
    ]
    for name, value in rows:
        table.add_row(name, value)
    for i, text in enumerate(s.faults or ["none"]):
        table.add_row("faults seen" if i == 0 else "", text)
    console.print(table)


@app.command("faults")
def list_faults() -> None:
    """List the fault catalogue the twin can simulate."""
    table = Table("#", "default target", "magnitude", "range", "shows as")
    table.columns.insert(1, Column("kind", no_wrap=True))
    for f in CATALOGUE.values():
        table.add_row(
            str(f.number),
            f.kind,
            f.default_target,
            f"{f.default_magnitude:g} {f.magnitude_unit}".strip(),
            f"{f.low:g}..{f.high:g}",
            f.shows_as,
        )
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
