"""`plant bridge ...`: the bridge services, the edge gateway and the historian."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

import typer
from pydantic import ValidationError

from bridge.edge.cli import edge
from bridge.historian import service
from bridge.historian.settings import HistorianSettings
from bridge.spool import SpoolError

app = typer.Typer(help="Bridge services between OPC UA, MQTT and InfluxDB.", no_args_is_help=True)
app.command(name="edge")(edge)


def _fail(message: str) -> typer.Exit:
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(2)


def _first_error(error: ValidationError, prefix: str) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    key = f"{prefix}{where.upper()}" if where else prefix.rstrip("_")
    return f"{key}: {first['msg']}"


@app.command()
def historian() -> None:
    """MQTT -> disk spool -> InfluxDB, configured by PLANT_HISTORIAN_* variables."""
    try:
        settings = HistorianSettings()
    except ValidationError as error:
        raise _fail(_first_error(error, "PLANT_HISTORIAN_")) from None
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        service.run(settings, stop)
    except SpoolError as error:
        raise _fail(str(error)) from None
