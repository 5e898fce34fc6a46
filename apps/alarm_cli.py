"""`plant alarm`: the alarm list, and acknowledge, confirm, comment, shelve, unshelve, and take
out of and place back in service, over OPC UA.

It is an OPC UA client like any other: `list` subscribes to condition events and asks for
ConditionRefresh; the actions call the standard Part 9 methods on the alarm's condition (or its
ShelvingState), with the comment, so the server checks the user's role and writes the action,
its user and its comment into the condition's event and the audit trail. Where to connect and
as whom comes from the `PLANT_FAULT_*` variables, as for `plant fault` (--url, --user, ...).

Exit codes: 0 done, 1 the plant refused, 2 bad input, 3 plant unreachable, 4 not authorised.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from apps.fault_cli import Connection, console, fail, plant_command
from apps.scenario import ScenarioError, parse_time
from bridge.operator import AlarmInfo, OperatorClient

app = typer.Typer(
    help="The alarm list and the operator's alarm actions, over OPC UA "
    "(exit codes: 1 refused, 2 bad input, 3 unreachable, 4 not authorised).",
    no_args_is_help=True,
    add_completion=False,
)

AlarmId = Annotated[str, typer.Argument(help="Alarm id, e.g. nir.api_pct or equipment.bridging.")]
Comment = Annotated[
    str, typer.Option("--comment", "--reason", help="Comment (into the event and audit trail).")
]


def _row_style(alarm: AlarmInfo) -> str:
    if alarm.state == "active_unacked":
        return "bold red" if alarm.priority >= 700 else "red"
    if alarm.state in ("shelved", "out_of_service"):
        return "dim"
    return ""


@plant_command("list", on=app)
def list_alarms(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per alarm.")] = False,
    *,
    connection: Connection,
) -> None:
    """Alarms that need attention (active, unacknowledged, unconfirmed, shelved, out of
    service), most urgent first."""
    alarms = connection.run(lambda plant: plant.alarms())
    if as_json:
        for alarm in alarms:
            record = asdict(alarm)
            record["event_id"] = alarm.event_id.hex()
            record["time"] = alarm.time.isoformat() if alarm.time else None
            record["state"] = alarm.state
            typer.echo(json.dumps(record, separators=(",", ":")))
        return
    if not alarms:
        console.print("no alarms")
        return
    table = Table("priority", "alarm", "state", "level", "since (UTC)", "message", "last by")
    for alarm in alarms:
        since = alarm.time.strftime("%H:%M:%S") if alarm.time else ""
        last = f"{alarm.user}: {alarm.comment}" if alarm.comment else alarm.user
        table.add_row(
            alarm.priority_name,
            alarm.id,
            alarm.state,
            alarm.level,
            since,
            alarm.message,
            last,
            style=_row_style(alarm),
        )
    console.print(table)


def _act(
    alarm_id: str, action: str, comment: str, duration_s: float | None, connection: Connection
) -> None:
    async def work(plant: OperatorClient) -> None:
        await plant.alarm_action(alarm_id, action, comment, duration_s)

    connection.run(work)
    console.print(f"{alarm_id}: {action.replace('_', ' ')} done")


@plant_command("ack", on=app)
def acknowledge(
    alarm: AlarmId,
    comment: Comment = "",
    *,
    connection: Connection,
) -> None:
    """Acknowledge an alarm (its newest event)."""
    _act(alarm, "acknowledge", comment, None, connection)


@plant_command("confirm", on=app)
def confirm(
    alarm: AlarmId,
    comment: Comment = "",
    *,
    connection: Connection,
) -> None:
    """Confirm an acknowledged alarm (the condition was dealt with)."""
    _act(alarm, "confirm", comment, None, connection)


@plant_command("comment", on=app)
def comment(
    alarm: AlarmId,
    text: Comment,
    *,
    connection: Connection,
) -> None:
    """Add a comment to an alarm."""
    if not text.strip():
        raise fail("a comment needs --comment TEXT")
    _act(alarm, "comment", text, None, connection)


@plant_command("shelve", on=app)
def shelve(
    alarm: AlarmId,
    comment: Comment = "",
    for_: Annotated[
        str | None,
        typer.Option(
            "--for", help="Shelve for this long (e.g. 600, 10m, 1h, plant time); else one-shot."
        ),
    ] = None,
    *,
    connection: Connection,
) -> None:
    """Shelve an alarm: until it clears (one-shot), or for a time (--for)."""
    duration: float | None = None
    if for_ is not None:
        try:
            duration = parse_time(for_, "--for")
        except ScenarioError as error:
            raise fail(str(error)) from None
        if duration <= 0:
            raise fail("--for must be longer than 0")
    _act(alarm, "shelve", comment, duration, connection)


@plant_command("unshelve", on=app)
def unshelve(
    alarm: AlarmId,
    comment: Comment = "",
    *,
    connection: Connection,
) -> None:
    """Unshelve an alarm."""
    _act(alarm, "unshelve", comment, None, connection)


@plant_command("out-of-service", on=app)
def out_of_service(
    alarm: AlarmId,
    comment: Comment = "",
    *,
    connection: Connection,
) -> None:
    """Take an alarm out of service (ISA-18.2: not annunciated until placed back; a reason is
    required, it goes into the audit trail)."""
    if not comment.strip():
        raise fail("taking an alarm out of service needs --reason TEXT")
    _act(alarm, "remove_from_service", comment, None, connection)


@plant_command("in-service", on=app)
def in_service(
    alarm: AlarmId,
    comment: Comment = "",
    *,
    connection: Connection,
) -> None:
    """Place an alarm back in service."""
    _act(alarm, "place_in_service", comment, None, connection)
