"""`plant opcua serve`: run the twin behind its OPC UA server, configured from the environment.

Settings are read from `PLANT_OPCUA_*` variables (see `settings.env.example`), validated here,
and passed down; nothing below reads the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from core import gc_policy
from core.layout import LayoutError
from opcua_server.security import SecurityError
from opcua_server.server import PlantServer
from opcua_server.settings import OpcUaSettings

app = typer.Typer(help="The twin's OPC UA server.", no_args_is_help=True, add_completion=False)
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    # One line (rich wraps at 80 columns without a terminal); `[users.x]` is not markup.
    err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _settings_error(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        problems.append(f"PLANT_OPCUA_{field.upper()}: {item['msg']}")
    return "; ".join(problems)


@app.command()
def serve(
    log_level: Annotated[str, typer.Option(help="Log level: debug, info, warning.")] = "info",
) -> None:
    """Serve the twin over OPC UA until interrupted (settings: PLANT_OPCUA_* variables)."""
    try:
        settings = OpcUaSettings()
    except ValidationError as error:
        raise _fail(_settings_error(error)) from None
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise _fail(f"unknown log level {log_level!r}")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # asyncua logs every request at INFO; only its warnings are news.
    logging.getLogger("asyncua").setLevel(max(level, logging.WARNING))
    try:
        server = PlantServer(settings)
    except LayoutError as error:
        raise _fail(str(error)) from None
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(server))
    except (SecurityError, OSError) as error:
        raise _fail(str(error)) from None


async def _serve(server: PlantServer) -> None:
    gc_policy.for_service()
    async with server:
        gc_policy.freeze_startup()  # the address space lives as long as the process
        err.print(f"serving {server.endpoint} (Ctrl-C stops)", highlight=False)
        await server.wait_closed()
