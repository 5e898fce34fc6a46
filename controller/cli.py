"""`plant controller run`: the supervisory controller on MQTT, configured from the environment.

Settings are read from `PLANT_CONTROLLER_*` variables (see `settings.env.example`), validated
here, and passed down; nothing below reads the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from controller.service import serve
from controller.settings import ControllerSettings

app = typer.Typer(
    help="The supervisory controller on MQTT.", no_args_is_help=True, add_completion=False
)
err = Console(stderr=True, soft_wrap=True)  # an error stays one line


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/] {message}", highlight=False)
    return typer.Exit(2)


def _settings_error(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "settings"
        problems.append(f"PLANT_CONTROLLER_{field.upper()}: {item['msg']}")
    return "; ".join(problems)


@app.command()
def run(
    log_level: Annotated[str, typer.Option(help="Log level: debug, info, warning.")] = "info",
    enabled: Annotated[
        bool | None,
        typer.Option(
            "--enabled/--watch-only",
            help="Send commands, or only watch and alarm (overrides PLANT_CONTROLLER_ENABLED).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the controller until interrupted (settings: PLANT_CONTROLLER_* variables)."""
    try:
        settings = ControllerSettings()
    except ValidationError as error:
        raise _fail(_settings_error(error)) from None
    if enabled is not None:
        settings = settings.model_copy(update={"enabled": enabled})
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise _fail(f"unknown log level {log_level!r}")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))
