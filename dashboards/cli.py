"""`plant grafana push|annotate`: the dashboards and fault marks in an existing Grafana.

Needs the optional extra: `pip install 'pcmm-twin[grafana]'`. docker-compose does not need
this: its Grafana is provisioned from dashboards/provisioning at start-up.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from dashboards.build import build_all
from dashboards.panels import DATASOURCE_UID
from dashboards.push import PushError, annotate, influx_faults, push_dashboards

app = typer.Typer(
    help="Load the plant dashboards into a Grafana and mark faults there.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

Url = Annotated[str, typer.Option(help="Grafana base URL, e.g. http://127.0.0.1:3000.")]
Token = Annotated[
    str,
    typer.Option(
        help="Grafana service-account token (or user:password) [PLANT_GRAFANA_TOKEN].",
        envvar="PLANT_GRAFANA_TOKEN",
        show_default=False,
    ),
]
Timeout = Annotated[float, typer.Option(help="HTTP timeout, seconds.", min=0.1)]


def _fail(error: PushError) -> typer.Exit:
    err.print(f"[red]error:[/] {error}")
    return typer.Exit(1)


@app.command()
def push(
    url: Url,
    token: Token,
    folder: Annotated[str, typer.Option(help="Folder to put the dashboards in.")] = "PCMM plant",
    datasource_uid: Annotated[
        str, typer.Option(help="UID of that Grafana's InfluxDB (InfluxQL) datasource.")
    ] = DATASOURCE_UID,
    timeout: Timeout = 10.0,
) -> None:
    """Create or overwrite the seven plant dashboards."""
    try:
        urls = push_dashboards(
            url,
            token,
            build_all(),
            folder=folder,
            datasource_uid=datasource_uid,
            timeout_s=timeout,
        )
    except PushError as error:
        raise _fail(error) from None
    for path in urls:
        out.print(f"{url.rstrip('/')}{path}" if path.startswith("/") else path)


@app.command("annotate")
def annotate_faults(
    url: Url,
    token: Token,
    influx_url: Annotated[str, typer.Option(help="InfluxDB base URL (its /query endpoint).")],
    influx_token: Annotated[
        str,
        typer.Option(
            help="InfluxDB token [PLANT_GRAFANA_INFLUX_TOKEN].", envvar="PLANT_GRAFANA_INFLUX_TOKEN"
        ),
    ] = "",
    bucket: Annotated[str, typer.Option(help="Bucket (2.x) or database (1.x).")] = "pcmm",
    since: Annotated[str, typer.Option(help="How far back, an InfluxQL duration.")] = "24h",
    site: Annotated[str | None, typer.Option(help="Only this site.")] = None,
    timeout: Timeout = 10.0,
) -> None:
    """Mark the fault injections the historian stored as Grafana annotations."""
    try:
        marks = influx_faults(influx_url, influx_token, bucket, since, site, timeout)
        posted = annotate(url, token, marks, timeout)
    except PushError as error:
        raise _fail(error) from None
    out.print(f"{len(marks)} fault events, {posted} new annotations")
