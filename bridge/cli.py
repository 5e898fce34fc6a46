"""`plant bridge ...`: the bridge services, the edge gateway and the historian."""

from __future__ import annotations

import logging
import signal
import sqlite3
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from pydantic import ValidationError

from bridge.deadletter import read_deadletters
from bridge.edge.cli import edge
from bridge.historian import service
from bridge.historian.settings import HistorianSettings
from bridge.spool import SpoolError
from core import gc_policy

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
    gc_policy.for_service()
    gc_policy.freeze_startup()  # the imported modules
    try:
        service.run(settings, stop)
    except SpoolError as error:  # a full disk included: one line, exit 2
        raise _fail(str(error)) from None
    except service.ThreadDiedError as error:  # a bug: its traceback is in the log above
        print(f"error: {error}", file=sys.stderr)
        raise typer.Exit(1) from None


@app.command()
def deadletters(
    path: Annotated[
        Path | None,
        typer.Option(help="A dead-letter store (the edge's, ...); default: the historian's."),
    ] = None,
    after: Annotated[int, typer.Option(help="Only letters with a larger id.")] = 0,
    limit: Annotated[int | None, typer.Option(help="At most this many letters.")] = None,
) -> None:
    """Print dead letters, whole, one JSON object a line (oldest first).

    Without --path, the historian's store: the one its PLANT_HISTORIAN_* settings name
    (DEADLETTER_PATH, or beside SPOOL_PATH). A store may be read while its service runs.
    """
    if path is None:
        try:
            path = HistorianSettings().deadletters
        except ValidationError as error:
            raise _fail(_first_error(error, "PLANT_HISTORIAN_")) from None
    if not path.exists():
        raise _fail(f"no dead-letter store at {path}")
    try:
        letters = read_deadletters(path, after, limit)
    except sqlite3.Error as error:
        raise _fail(f"cannot read {path}: {error}") from None
    for letter in letters:
        line = letter.encode()
        print(line.decode())
