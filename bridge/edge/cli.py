"""`plant bridge edge` (and `python -m bridge.edge`): run the edge gateway until interrupted.

Settings come from PLANT_EDGE_* variables (see settings.env.example), validated here and
passed down; nothing below reads the environment.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import typer
from pydantic import ValidationError

from bridge.edge.sequence import SequenceError
from bridge.edge.service import Edge, EdgeFailedError
from bridge.edge.settings import EdgeSettings
from bridge.spool import SpoolError
from core import gc_policy
from core.layout import LayoutError

app = typer.Typer(
    help="The edge gateway: OPC UA -> MQTT, commands -> OPC UA.", add_completion=False
)


def _fail(message: str) -> typer.Exit:
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(2)


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    key = f"PLANT_EDGE_{where.upper()}" if where else "PLANT_EDGE"
    return f"{key}: {first['msg']}"


def edge() -> None:
    """OPC UA -> outbox -> MQTT, and MQTT commands -> OPC UA (settings: PLANT_EDGE_*)."""
    try:
        settings = EdgeSettings()
    except ValidationError as error:
        raise _fail(_first_error(error)) from None
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # asyncua logs every request at INFO, and each lost connection at length: only its
    # warnings are news (the edge logs its own state changes).
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    try:
        edge_service = Edge(settings)
    except (SpoolError, SequenceError, LayoutError) as error:
        raise _fail(str(error)) from None
    gc_policy.for_service()
    gc_policy.freeze_startup()  # the imported modules (asyncua's types: most of the heap)
    try:
        asyncio.run(_run(edge_service))
    except SpoolError as error:  # a full disk: one line, as at start-up
        raise _fail(str(error)) from None
    except EdgeFailedError as error:  # logged with its traceback where it happened
        print(f"error: {error}; stopping so that the supervisor restarts the edge", file=sys.stderr)
        raise typer.Exit(1) from None


async def _run(edge_service: Edge) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await edge_service.run(stop)


app.command(name="edge")(edge)
