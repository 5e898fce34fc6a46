"""`plant fault`: inject and clear faults, start and stop the line, and play scenarios, over OPC UA.

It talks to the plant's OPC UA server as an operator, through the methods of
`Objects/<site>/Commands`, so every call is checked for the user's role and audited by the
plant. Where to connect and as whom comes from `PLANT_FAULT_*` variables (see
`apps/fault.env.example`), each overridable by an option (--url, --user, ...).

Exit codes: 0 done, 1 the plant refused, 2 bad input, 3 plant unreachable, 4 not authorised.
Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.table import Column, Table

from apps.scenario import Scenario, ScenarioError, load_scenario, parse_time
from apps.scenario_player import OpcUaTarget, carry_out, clear_faults
from bridge.operator import FaultInfo, OperatorClient, PlantError, Target
from core.faults import CATALOGUE

T = TypeVar("T")

app = typer.Typer(
    help="Faults, line commands and scenarios on a running plant, over OPC UA "
    "(exit codes: 1 refused, 2 bad input, 3 unreachable, 4 not authorised).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # an error stays one line

BAD_INPUT = 2
STALL_S = 30.0  # wall seconds the plant clock may stand still before `run` gives up


class FaultCliSettings(BaseSettings):
    """Where the plant's OPC UA server is and who the operator is."""

    model_config = SettingsConfigDict(
        env_prefix="PLANT_FAULT_", extra="forbid", env_ignore_empty=True
    )

    url: str = "opc.tcp://127.0.0.1:4840/pcmm/site1"
    site_id: str = Field(default="site1", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    namespace_uri: str = "urn:pcmm-twin:opcua"
    user: str = ""
    password: SecretStr = SecretStr("")
    cert: Path | None = None  # client certificate: Basic256Sha256 SignAndEncrypt
    key: Path | None = None
    server_cert: Path | None = None
    timeout_s: float = Field(default=10.0, gt=0.0)


def fail(message: str, code: int = BAD_INPUT) -> typer.Exit:
    err.print(f"[red]error:[/] {message}")
    return typer.Exit(code)


# Connection options, shared by every command that talks to the plant.
Url = Annotated[str | None, typer.Option(help="OPC UA endpoint [PLANT_FAULT_URL].")]
User = Annotated[str | None, typer.Option(help="Operator user name [PLANT_FAULT_USER].")]
Password = Annotated[
    str | None, typer.Option(help="Password [PLANT_FAULT_PASSWORD].", show_default=False)
]
Site = Annotated[str | None, typer.Option(help="Site id [PLANT_FAULT_SITE_ID].")]
Cert = Annotated[
    Path | None, typer.Option(help="Client certificate: sign and encrypt [PLANT_FAULT_CERT].")
]
Key = Annotated[Path | None, typer.Option(help="Client private key [PLANT_FAULT_KEY].")]
Reason = Annotated[str, typer.Option(help="Why (written to the plant's audit trail).")]


def target(
    url: str | None,
    user: str | None,
    password: str | None,
    site: str | None,
    cert: Path | None,
    key: Path | None,
) -> Target:
    """The settings from the environment, overridden by the options given."""
    try:
        s = FaultCliSettings()
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise fail(f"PLANT_FAULT_{field.upper()}: {first['msg']}") from None
    return Target(
        url=url or s.url,
        site=site or s.site_id,
        namespace_uri=s.namespace_uri,
        user=s.user if user is None else user,
        password=s.password.get_secret_value() if password is None else password,
        cert=cert or s.cert,
        key=key or s.key,
        server_cert=s.server_cert,
        timeout_s=s.timeout_s,
    )


def with_plant(where: Target, work: Callable[[OperatorClient], Awaitable[T]]) -> T:
    """Open a session, do the work, close it; a PlantError becomes its one line and exit code."""

    async def main() -> T:
        async with OperatorClient(where) as plant:
            return await work(plant)

    # asyncua warns about what this command reports itself (refused sessions, closed channels).
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(main())
    except PlantError as error:
        raise fail(str(error), error.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    except Exception as error:  # a bug of ours, or of a server: still one line, not a traceback
        raise fail(f"unexpected {type(error).__name__}: {error}", 1) from None


@dataclass(frozen=True)
class Connection:
    """The connection options as given (None: not given, so from `PLANT_FAULT_*`)."""

    url: str | None
    user: str | None
    password: str | None
    site: str | None
    cert: Path | None
    key: Path | None

    def run(self, work: Callable[[OperatorClient], Awaitable[T]]) -> T:
        """Resolve the settings, then do the work in a session (see `with_plant`)."""
        where = target(self.url, self.user, self.password, self.site, self.cert, self.key)
        return with_plant(where, work)


_CONNECTION_OPTIONS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=option)
    for name, option in (
        ("url", Url),
        ("user", User),
        ("password", Password),
        ("site", Site),
        ("cert", Cert),
        ("key", Key),
    )
]


def plant_command(
    name: str | None = None, *, on: typer.Typer | None = None
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a command that talks to the plant, with the connection options after its own.

    `on` is the Typer app it belongs to (`plant fault` by default; `plant alarm` uses it too).

    The command declares its own arguments and options and a keyword-only
    `connection: Connection`; the CLI shows its options followed by --url, --user, --password,
    --site, --cert and --key, which reach the command bundled as `connection`. Nothing is resolved
    or connected until the command calls `connection.run`, so it checks its own input first.
    """

    def register(command: Callable[..., None]) -> Callable[..., None]:
        own = inspect.signature(command, eval_str=True)

        @functools.wraps(command)
        def with_connection(**options: Any) -> None:
            given = {option.name: options.pop(option.name) for option in _CONNECTION_OPTIONS}
            command(**options, connection=Connection(**given))

        # Typer reads the options from the signature: the command's own, then the connection's.
        own_options = [p for p in own.parameters.values() if p.name != "connection"]
        with_connection.__signature__ = own.replace(  # type: ignore[attr-defined]
            parameters=[*own_options, *_CONNECTION_OPTIONS]
        )
        (on or app).command(name)(with_connection)
        return command

    return register


# Parsing and formatting ----------------------------------------------------------------------
def check_fault(kind: str, magnitude: float | None) -> str:
    """Check a fault against the catalogue; returns its magnitude unit, or raises ValueError."""
    ftype = CATALOGUE.get(kind)
    if ftype is None:
        raise ValueError(f"unknown fault {kind!r}; known: {', '.join(CATALOGUE)}")
    if magnitude is not None and not (
        math.isfinite(magnitude) and ftype.low <= magnitude <= ftype.high
    ):
        unit = f" {ftype.magnitude_unit}" if ftype.magnitude_unit else ""
        raise ValueError(
            f"bad magnitude {magnitude:g} for {kind}: must be {ftype.low:g}..{ftype.high:g}{unit}"
        )
    return ftype.magnitude_unit


def format_duration(seconds: float) -> str:
    """90 -> 1m30s, 0 -> 'until cleared'."""
    if seconds <= 0:
        return "until cleared"
    return format_time(seconds)


def format_time(seconds: float) -> str:
    """Plant time since a run's start: 0s, 45s, 20m, 1h45m, 1h0m30s."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes or (hours and secs) else "")
    return text + (f"{secs}s" if secs or not text else "")


def parse_when(text: str, now: datetime, option: str) -> datetime:
    """A time on the plant clock: `now`, `-10m` (that long before the plant clock's now), or an
    ISO 8601 time (UTC unless it says otherwise), as the dashboards show source times."""
    text = text.strip()
    if text == "now":
        return now
    if text.startswith("-"):
        return now - timedelta(seconds=parse_time(text[1:], option))
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{option}: {text!r} is neither 'now', '-DURATION' (e.g. -10m) nor an ISO 8601 time"
        ) from None
    return _utc(when)


def _utc(when: datetime) -> datetime:
    """A time without an offset taken as UTC: an ISO time as given, a source time as asyncua
    gives it (with or without the offset by version)."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def describe_fault(f: FaultInfo) -> str:
    ftype = CATALOGUE.get(f.kind)
    unit = f" {ftype.magnitude_unit}" if ftype and ftype.magnitude_unit else ""
    return f"#{f.id} {f.kind} on {f.target}, {f.magnitude:g}{unit} ({f.state})"


def catalogue_table() -> Table:
    table = Table(
        "#",
        Column("kind", no_wrap=True),
        Column("default target", no_wrap=True),
        "magnitude (default, unit)",
        "range",
        "meaning",
    )
    for f in CATALOGUE.values():
        unit = f" {f.magnitude_unit}" if f.magnitude_unit else ""
        table.add_row(
            str(f.number),
            f.kind,
            f.default_target,
            f"{f.default_magnitude:g}{unit}",
            f"{f.low:g}..{f.high:g}",
            f.magnitude_meaning,
        )
    table.caption = "duration: plant seconds, or with s/m/h (5m, 1h30m); 0 lasts until cleared"
    return table


# Commands ---------------------------------------------------------------------------------
@app.command("list")
def list_faults() -> None:
    """The fault catalogue: kinds, default targets, magnitudes with units and ranges."""
    console.print(catalogue_table())


@plant_command()
def inject(
    kind: Annotated[str, typer.Argument(help="Fault kind (see `plant fault list`).")],
    target_module: Annotated[
        str, typer.Option("--target", help="Module id; default: the catalogue's.")
    ] = "",
    magnitude: Annotated[
        float | None, typer.Option(help="Size, in the fault's unit; default: the catalogue's.")
    ] = None,
    duration: Annotated[
        str, typer.Option(help="Plant time it lasts: 300, 5m, 1h; 0 until cleared.")
    ] = "0",
    reason: Reason = "",
    *,
    connection: Connection,
) -> None:
    """Inject a fault now; prints its id (for `clear`)."""
    try:
        unit = check_fault(kind, magnitude)
        duration_s = parse_time(duration, "--duration")
    except (ValueError, ScenarioError) as error:
        raise fail(str(error)) from None

    async def work(plant: OperatorClient) -> int:
        return await plant.inject(kind, target_module, magnitude, duration_s, reason)

    fault_id = connection.run(work)
    size = "default size" if magnitude is None else f"{magnitude:g} {unit}".strip()
    console.print(
        f"injected {kind} on {target_module or CATALOGUE[kind].default_target} "
        f"({size}, {format_duration(duration_s)}): fault {fault_id}"
    )


@plant_command()
def clear(
    fault: Annotated[str, typer.Argument(help="Fault id, or a kind to clear its active fault.")],
    target_module: Annotated[
        str, typer.Option("--target", help="With a kind: only the fault on this module.")
    ] = "",
    reason: Reason = "",
    *,
    connection: Connection,
) -> None:
    """End a fault now, by id or by kind."""
    fault_id = int(fault) if fault.isdigit() else None
    if fault_id is None and fault not in CATALOGUE:
        raise fail(f"{fault!r} is neither a fault id nor a kind; known: {', '.join(CATALOGUE)}")

    async def work(plant: OperatorClient) -> list[FaultInfo]:
        return await clear_faults(plant, fault_id, fault, target_module, reason)

    for cleared in connection.run(work):
        console.print(f"cleared {describe_fault(cleared)}")


@plant_command()
def quarantine(
    start: Annotated[
        str,
        typer.Option(
            "--from",
            help="Start: now, -DURATION (-10m: before the plant clock's "
            "now) or an ISO 8601 time (UTC unless given).",
        ),
    ],
    end: Annotated[str, typer.Option("--to", help="End, the same way.")] = "now",
    reason: Reason = "",
    *,
    connection: Connection,
) -> None:
    """Flag a press-time window in genealogy: its accepted tablets are held back, not released
    (fault 13's response). At most an hour; it may not end in the future while the press runs."""
    for text, option in ((start, "--from"), (end, "--to")):
        try:  # check the form before connecting; the times need the plant clock
            parse_when(text, datetime.now(UTC), option)
        except (ValueError, ScenarioError) as error:
            raise fail(str(error)) from None

    async def work(plant: OperatorClient) -> tuple[datetime, datetime, int]:
        now = _utc(await plant.plant_clock())
        return await plant.quarantine(
            parse_when(start, now, "--from"), parse_when(end, now, "--to"), reason
        )

    first, last, tablets = connection.run(work)
    console.print(
        f"quarantined {tablets:,} tablets pressed {first.isoformat(timespec='milliseconds')} "
        f"to {last.isoformat(timespec='milliseconds')}"
    )


@plant_command()
def status(*, connection: Connection) -> None:
    """The line state, the plant clock and the pending and active faults."""
    result = connection.run(lambda plant: plant.status())
    clock = result.plant_time.isoformat(timespec="seconds") if result.plant_time else "unknown"
    console.print(f"line: {result.line_state}   plant clock: {clock}")
    if not result.faults:
        console.print("faults: none")
    for f in result.faults:
        console.print(f"fault {describe_fault(f)}")


def _line_command(action: str) -> Callable[..., None]:
    def command(reason: Reason = "", *, connection: Connection) -> None:
        state = connection.run(lambda plant: plant.line(action, reason))
        console.print(f"{action}: line {state}")

    command.__doc__ = {
        "start": "Start the line.",
        "stop": "Stop the line (the press runs it dry).",
        "abort": "Emergency stop: drives halt, material stays; reset needed (if the server "
        "has the Abort method).",
        "reset": "Reset a stopped or faulted line to idle.",
    }[action]
    return command


for _action in ("start", "stop", "abort", "reset"):
    plant_command(_action)(_line_command(_action))


# Scenarios -----------------------------------------------------------------------------------
@plant_command("run")
def run_scenario(
    scenario_file: Annotated[Path, typer.Argument(help="Scenario YAML (see apps/scenario.py).")],
    start: Annotated[
        str,
        typer.Option(
            "--start",
            help="Plant-clock time the scenario's times count from: now, or an ISO 8601 "
            "time (UTC unless given) still ahead of the plant clock.",
        ),
    ] = "now",
    *,
    connection: Connection,
) -> None:
    """Play a scenario's timeline on the running plant, at plant time from now (or `--start`).

    Each event waits for the plant clock (the server's, whatever its speed factor) to reach its
    time after the start of the run, then is carried out and printed with its result. The
    scenario's seed, hours and warm_start belong to the server's configuration and are ignored.
    A refused event is printed and the run goes on; the exit code is then 1.

    `--start` pins the run to the plant's own history rather than to when the command was
    typed: an accelerated plant started with a fixed `PLANT_OPCUA_START_UTC` meets each fault at
    the same point of its refill cycles, however long its start-up took on the wall clock.
    """
    try:
        scenario = load_scenario(scenario_file)
        for event in scenario.events:
            if event.action == "fault":
                check_fault(event.kind, event.magnitude)
        parse_when(start, datetime.now(UTC), "--start")  # the form, before connecting
    except (ScenarioError, ValueError) as error:
        raise fail(str(error)) from None
    if start.strip().startswith("-"):
        raise fail("--start: the run cannot begin in the plant's past; give now or a time ahead")
    refused = connection.run(lambda plant: play(plant, scenario, console.print, start=start))
    if refused:
        raise fail(f"{refused} of {len(scenario.events)} events refused", 1)


async def play(
    plant: OperatorClient,
    scenario: Scenario,
    say: Callable[[str], object],
    monotonic: Callable[[], float] = time.monotonic,
    start: str = "now",
) -> int:
    """Carry out the scenario's events at their plant times, counted from `start` (see
    `run_scenario`); returns how many were refused."""
    now = _utc(await plant.plant_clock())
    begin = parse_when(start, now, "--start")
    if begin < now:
        raise StartPassedError(
            f"--start {begin.isoformat()} is past: the plant clock is at {now.isoformat()} "
            "already; give a later time"
        )
    say(f"{scenario.name}: {len(scenario.events)} events, plant clock {begin.isoformat()}")
    clock = _Clock(plant, begin, now, monotonic())
    refused = 0
    for event in scenario.events:
        elapsed = await clock.wait(event.at_s, monotonic)
        try:
            result = await carry_out(OpcUaTarget(plant), event)
        except PlantError as error:
            if error.exit_code != 1:  # unreachable or not authorised: nothing more will work
                raise
            refused += 1
            result = f"REFUSED: {error}"
        say(f"[{format_time(elapsed):>8}] {event.describe()}: {result}")
    say(f"done: {len(scenario.events) - refused} carried out, {refused} refused")
    return refused


class StartPassedError(PlantError):
    """`run --start` names a plant time the plant clock has passed: bad input, found late."""

    exit_code = BAD_INPUT


class _Clock:
    """Waits for the plant clock, polling it no faster than it moves: its speed is measured
    from the first reading on (`origin`), not from the scenario's start, which may lie ahead."""

    def __init__(
        self, plant: OperatorClient, start: datetime, origin: datetime, wall0: float
    ) -> None:
        self.plant, self.start = plant, start
        self.origin, self.wall0 = origin, wall0
        self.speed: float | None = None  # plant seconds per wall second, once measured

    async def wait(self, at_s: float, monotonic: Callable[[], float]) -> float:
        last, moved_at = self.origin, monotonic()
        while True:
            now = _utc(await self.plant.plant_clock())
            wall = monotonic()
            elapsed = (now - self.start).total_seconds()
            if elapsed >= at_s:
                return elapsed
            if now > last:
                last, moved_at = now, wall
                ran = (now - self.origin).total_seconds()
                if wall - self.wall0 > 0.5:
                    self.speed = ran / (wall - self.wall0)
            elif wall - moved_at > STALL_S:
                raise PlantError(f"the plant clock has stood still for {STALL_S:g} s")
            pause = (at_s - elapsed) / self.speed if self.speed else 0.2
            await asyncio.sleep(min(max(pause, 0.02), 1.0))
