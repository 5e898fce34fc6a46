"""The methods of `Objects/<site>/Commands`: start, stop, abort, reset, setpoints, faults and
quarantine.

Handlers are `async def`, so asyncua runs them on the event loop, between two clock ticks,
never racing the twin. A call that cannot be carried out answers with a Bad status code, the
input argument at fault marked Bad, and a one-line explanation in that argument's
`DiagnosticInfo.AdditionalInfo` (or the first one's, when no single argument is at fault).
Every call an operator makes is audited by the twin; a call refused for the user's role is
audited here.

A gateway (the MQTT edge) calls with its own account, of role `gateway`, on behalf of someone
else: the optional `OnBehalfOf` argument names that requester, and the audit trail records
`"<requester> via <caller>"`, so the record names both the person who asked and the account that
carried it out. The gateway's broker authenticated the requester; the server checks the
caller's role. Only a gateway may name someone: a plain operator's call with an `OnBehalfOf`
is refused (BadUserAccessDenied) and audited under the operator's own name, so no operator can
put another person's name on a record. A reason longer than `core.text.MAX_REASON_CHARS` is
refused (BadInvalidArgument), never cut. `WriteSetpoint` is a setpoint write with a reason and
a requester, which a plain OPC UA Write cannot carry.

`Quarantine(StartTime, EndTime, Reason, OnBehalfOf)` flags in genealogy the tablets pressed in
that window (UTC source times, as the tags show them): the accepted ones are held back, not
released (fault 13's response, `twin.QuarantineCommand`). A bad window (not ordered, longer than
an hour, beyond the ledger's kept tablets, or ending in the future while the press runs) is
BadOutOfRange. It answers the window flagged (its end cut at the present once the press has
stopped) and how many tablets it held back.

One method sits on the site's object itself, `Objects/<site>/AuditSince`: it reads the audit
trail (records after a sequence number, paged), for a client that missed audit events (events
are not historized). It only reads, so, like subscribing to those events, every session may
call it: operator, viewer, and anonymous where the server allows anonymous sessions.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asyncua import Node, Server, ua

from core.commands import CommandResult, LineCommand, QuarantineCommand
from core.faults import CATALOGUE, FaultSpec
from core.text import MAX_NAME_CHARS, MAX_REASON_CHARS, clip, shown
from opcua_server.address_space import COMMANDS, PlantNodes
from opcua_server.clock import PlantClock
from opcua_server.sessions import current_user
from twin import Plant

log = logging.getLogger(__name__)

_INTEGER_TYPES = frozenset(
    {
        ua.VariantType.SByte,
        ua.VariantType.Byte,
        ua.VariantType.Int16,
        ua.VariantType.UInt16,
        ua.VariantType.Int32,
        ua.VariantType.UInt32,
        ua.VariantType.Int64,
        ua.VariantType.UInt64,
    }
)
_NUMBER_TYPES = _INTEGER_TYPES | {ua.VariantType.Float, ua.VariantType.Double}


@dataclass(frozen=True, slots=True)
class Param:
    """One input argument: its name, type and, when optional, its default."""

    name: str
    datatype: int  # ua.ObjectIds of the data type
    description: str
    default: Any = None

    @property
    def optional(self) -> bool:
        return self.default is not None

    def argument(self) -> ua.Argument:
        return _argument(self.name, self.datatype, self.description)


class Refusal(Exception):  # noqa: N818 - it is an answer, not an error of ours
    """A call that cannot be carried out: the status, which argument, and why."""

    def __init__(self, status: int, message: str, argument: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.argument = argument


REASON = Param("Reason", ua.ObjectIds.String, "Why (written to the audit log); optional", "")
ON_BEHALF = Param(
    "OnBehalfOf",
    ua.ObjectIds.String,
    "The user a gateway acts for; audited as '<user> via <caller>'; optional",
    "",
)
LINE_PARAMS = (REASON, ON_BEHALF)
WRITE_PARAMS = (
    Param("Tag", ua.ObjectIds.String, "Setpoint tag id, e.g. press.fill_depth_sp"),
    Param("Value", ua.ObjectIds.BaseDataType, "A number, a boolean or a state name"),
    REASON,
    ON_BEHALF,
)
INJECT_PARAMS = (
    Param("Kind", ua.ObjectIds.String, "Fault kind from the catalogue, e.g. bridging"),
    Param("Target", ua.ObjectIds.String, "Module id; empty for the catalogue's default", ""),
    Param(
        "Magnitude", ua.ObjectIds.Double, "Size in the fault's unit; NaN for the default", math.nan
    ),
    Param("DurationS", ua.ObjectIds.Double, "Plant seconds; 0 lasts until cleared", 0.0),
    REASON,
    ON_BEHALF,
)
CLEAR_PARAMS = (
    Param("FaultId", ua.ObjectIds.UInt32, "Id returned by InjectFault"),
    REASON,
    ON_BEHALF,
)
QUARANTINE_PARAMS = (
    Param("StartTime", ua.ObjectIds.DateTime, "Tablets pressed from this time (UTC)"),
    Param("EndTime", ua.ObjectIds.DateTime, "Up to this time (UTC), at most an hour later"),
    REASON,
    ON_BEHALF,
)
AUDIT_SINCE = "AuditSince"
AUDIT_SINCE_PARAMS = (
    Param("AfterSeq", ua.ObjectIds.UInt64, "Records with a sequence number above this"),
    Param(
        "MaxRecords",
        ua.ObjectIds.UInt32,
        "At most this many (0 or above the server's page size: the page size); optional",
        0,
    ),
)
#: Reads the audit trail: (after seq, max records) -> (records as JSON, last seq, log id).
AuditReader = Callable[[int, int], tuple[list[str], int, str]]

#: The twin's rejection codes of a setpoint write as status codes, and the argument at fault.
WRITE_REFUSALS: dict[str, tuple[int, int | None]] = {
    "range": (ua.StatusCodes.BadOutOfRange, 1),
    "type": (ua.StatusCodes.BadTypeMismatch, 1),
    "state": (ua.StatusCodes.BadInvalidState, None),
    "not_writable": (ua.StatusCodes.BadNotWritable, 0),
    "unknown_tag": (ua.StatusCodes.BadNodeIdUnknown, 0),
}

#: Writes a setpoint as a user: (tag id, value, user label, reason) -> the twin's result.
SetpointApply = Callable[[str, Any, str, str], Awaitable[CommandResult]]


class CommandMethods:
    """Builds the Commands object and answers its method calls.

    Args:
        plant: the twin.
        on_change: awaited after a call changed the plant (the server publishes at once).
        write: carries out `WriteSetpoint` (the server's `SetpointWriter.apply`); None leaves
            the method out.
        clock: maps `Quarantine`'s UTC times to plant time and back; None leaves it out.
    """

    def __init__(
        self,
        plant: Plant,
        on_change: Callable[[], Awaitable[None]],
        write: SetpointApply | None = None,
        clock: PlantClock | None = None,
    ) -> None:
        self.plant = plant
        self.on_change = on_change
        self.write = write
        self.clock = clock

    async def build(self, server: Server, nodes: PlantNodes, site_id: str) -> Node:
        """Add `Objects/<site>/Commands` and its methods."""
        ns = nodes.namespace
        site = server.get_node(nodes.site)
        commands = await site.add_object(
            ua.NodeId(f"{site_id}.{COMMANDS}", ns), ua.QualifiedName(COMMANDS, ns)
        )
        await commands.write_attribute(
            ua.AttributeIds.Description,
            ua.DataValue(
                ua.Variant(ua.LocalizedText("Line commands and fault injection (operators only)"))
            ),
        )
        state = [_argument("State", ua.ObjectIds.String, "Line state after the command")]
        fault_id = [_argument("FaultId", ua.ObjectIds.UInt32, "Id of the new fault")]
        written = [
            _argument("Old", ua.ObjectIds.String, "Value before, as JSON"),
            _argument("New", ua.ObjectIds.String, "Value now, as JSON"),
        ]
        listing = [
            _argument("FaultIds", ua.ObjectIds.UInt32, "Ids", array=True),
            _argument("Kinds", ua.ObjectIds.String, "Fault kinds", array=True),
            _argument("Targets", ua.ObjectIds.String, "Target modules", array=True),
            _argument("Magnitudes", ua.ObjectIds.Double, "Magnitudes", array=True),
            _argument("States", ua.ObjectIds.String, "pending or active", array=True),
        ]
        methods: list[tuple[str, Any, Sequence[Param], list[ua.Argument]]] = [
            ("Start", self._line("start"), LINE_PARAMS, state),
            ("Stop", self._line("stop"), LINE_PARAMS, state),
            ("Abort", self._line("abort"), LINE_PARAMS, state),
            ("Reset", self._line("reset"), LINE_PARAMS, state),
            ("InjectFault", self.inject_fault, INJECT_PARAMS, fault_id),
            ("ClearFault", self.clear_fault, CLEAR_PARAMS, []),
            ("ListFaults", self.list_faults, (), listing),
        ]
        if self.write is not None:
            methods.append(("WriteSetpoint", self.write_setpoint, WRITE_PARAMS, written))
        if self.clock is not None:
            flagged = [
                _argument("StartTime", ua.ObjectIds.DateTime, "Start of the window flagged"),
                _argument("EndTime", ua.ObjectIds.DateTime, "End of the window flagged"),
                _argument("Tablets", ua.ObjectIds.UInt64, "Accepted tablets it held back"),
            ]
            methods.append(("Quarantine", self.quarantine, QUARANTINE_PARAMS, flagged))
        for name, handler, params, outputs in methods:
            await commands.add_method(
                ua.NodeId(f"{site_id}.{COMMANDS}.{name}", ns),
                ua.QualifiedName(name, ns),
                _answering(handler, params, name),
                [p.argument() for p in params],
                outputs,
            )
        return commands

    # Handlers: each gets the parsed arguments and returns output variants or raises Refusal.
    def _line(self, action: str) -> Callable[..., Awaitable[list[ua.Variant]]]:
        async def handler(reason: str, on_behalf_of: str) -> list[ua.Variant]:
            user = self._operator(action, "line", reason, on_behalf_of, at=0)
            result = self.plant.apply(LineCommand(action, user=user, reason=reason))  # type: ignore[arg-type]
            if not result.accepted:
                status = (
                    ua.StatusCodes.BadInvalidState
                    if result.code == "state"
                    else ua.StatusCodes.BadInvalidArgument
                )
                raise Refusal(status, result.reason)
            await self.on_change()
            return [ua.Variant(self.plant.state, ua.VariantType.String)]

        return handler

    async def write_setpoint(
        self, tag: str, value: Any, reason: str, on_behalf_of: str
    ) -> list[ua.Variant]:
        if self.write is None:  # not offered then; kept for the type checker
            raise Refusal(ua.StatusCodes.BadNotImplemented, "WriteSetpoint is not offered")
        user = self._operator("write", tag, reason, on_behalf_of, at=2)
        result = await self.write(tag, value, user, reason)
        if not result.accepted:
            status, argument = WRITE_REFUSALS.get(
                result.code, (ua.StatusCodes.BadInvalidArgument, None)
            )
            raise Refusal(status, result.reason, argument)
        return [
            ua.Variant(json.dumps(result.old), ua.VariantType.String),
            ua.Variant(json.dumps(result.new), ua.VariantType.String),
        ]

    async def inject_fault(
        self,
        kind: str,
        target: str,
        magnitude: float,
        duration_s: float,
        reason: str,
        on_behalf_of: str,
    ) -> list[ua.Variant]:
        target_text = f"{kind}@{target or 'default'}"
        user = self._operator("inject_fault", target_text, reason, on_behalf_of, at=4)
        spec = FaultSpec(
            kind,
            target or None,
            None if math.isnan(magnitude) else magnitude,
            duration_s,
            user=user,
            reason=reason,
        )
        result = self.plant.inject(spec)
        if not result.accepted or result.fault_id is None:
            raise _fault_refusal(spec, result.reason)
        await self.on_change()
        return [ua.Variant(result.fault_id, ua.VariantType.UInt32)]

    async def clear_fault(self, fault_id: int, reason: str, on_behalf_of: str) -> list[ua.Variant]:
        user = self._operator("clear_fault", str(fault_id), reason, on_behalf_of, at=1)
        result = self.plant.clear(fault_id, user=user, reason=reason)
        if not result.accepted:
            status = (
                ua.StatusCodes.BadInvalidState
                if "already ended" in result.reason
                else ua.StatusCodes.BadInvalidArgument
            )
            raise Refusal(status, result.reason, 0)
        await self.on_change()
        return []

    async def quarantine(
        self, start: datetime, end: datetime, reason: str, on_behalf_of: str
    ) -> list[ua.Variant]:
        clock = self.clock
        if clock is None:  # not offered then; kept for the type checker
            raise Refusal(ua.StatusCodes.BadNotImplemented, "Quarantine is not offered")
        user = self._operator("quarantine", "genealogy", reason, on_behalf_of, at=2)
        # Bring the twin up to the clock first: a window that ends "now" must not be refused
        # for ending a publishing period in the twin's future.
        await self.on_change()
        command = QuarantineCommand(
            clock.plant_time(start), clock.plant_time(end), user=user, reason=reason
        )
        result = self.plant.apply(command)
        if not result.accepted:
            # The twin counts plant seconds; say where they start, for a client that sent UTC.
            origin = clock.utc(0.0).isoformat(timespec="seconds").replace("+00:00", "Z")
            why = f"{result.reason} (plant time counts seconds from {origin})"
            argument = 1 if result.reason.startswith("end") else 0
            raise Refusal(ua.StatusCodes.BadOutOfRange, why, argument)
        await self.on_change()
        flagged = result.new
        return [
            ua.Variant(clock.utc(flagged["start_s"]), ua.VariantType.DateTime),
            ua.Variant(clock.utc(flagged["end_s"]), ua.VariantType.DateTime),
            ua.Variant(flagged["tablets"], ua.VariantType.UInt64),
        ]

    async def list_faults(self) -> list[ua.Variant]:
        faults = self.plant.faults()
        return [
            ua.Variant([f.id for f in faults], ua.VariantType.UInt32, is_array=True),
            ua.Variant([f.kind for f in faults], ua.VariantType.String, is_array=True),
            ua.Variant([f.target for f in faults], ua.VariantType.String, is_array=True),
            ua.Variant([f.magnitude for f in faults], ua.VariantType.Double, is_array=True),
            ua.Variant([f.status for f in faults], ua.VariantType.String, is_array=True),
        ]

    def _operator(
        self, action: str, target: str, reason: str, on_behalf_of: str, *, at: int
    ) -> str:
        """The name to audit a call under; refused (and audited) unless the caller may make it.

        An operator or a gateway may call; only a gateway may name someone in `OnBehalfOf`;
        a reason longer than MAX_REASON_CHARS is refused, never cut (the audit trail keeps
        what was written). `at` is the index of the method's Reason argument (OnBehalfOf
        follows it), so the refusal blames the right one.
        """
        user = current_user.get()
        role = f"{user.label} ({user.plant_role})"
        status, blamed = ua.StatusCodes.BadUserAccessDenied, None
        if not user.may_operate:
            why = f"{role} may not call methods"
        elif on_behalf_of and not user.may_act_for_others:
            why = f"{role} may not act on behalf of {shown(on_behalf_of)}: only a gateway may"
            blamed = at + 1
        elif len(on_behalf_of) > MAX_NAME_CHARS:
            status, blamed = ua.StatusCodes.BadInvalidArgument, at + 1
            why = f"OnBehalfOf is {len(on_behalf_of):,} characters long; at most {MAX_NAME_CHARS}"
        elif len(reason) > MAX_REASON_CHARS:
            status, blamed = ua.StatusCodes.BadInvalidArgument, at
            why = (
                f"Reason is {len(reason):,} characters long; at most {MAX_REASON_CHARS} "
                "(refused, not cut: the audit trail keeps a reason whole)"
            )
        else:
            return f"{on_behalf_of} via {user.label}" if on_behalf_of else user.label
        # Audited under the caller's own name (and whom it acted for, when it may say so).
        label = user.label
        if on_behalf_of and user.may_act_for_others:
            label = f"{clip(on_behalf_of, MAX_NAME_CHARS)} via {label}"
        self.plant.audit.record(
            self.plant.now, label, action, target, reason=reason, accepted=False, result=why
        )
        raise Refusal(status, why, blamed)


async def add_audit_since(
    server: Server,
    nodes: PlantNodes,
    site_id: str,
    read: AuditReader,
    *,
    name: str = AUDIT_SINCE,
    parent: ua.NodeId | None = None,
    records: str = "",
) -> Node:
    """Add `Objects/<site>/AuditSince` (see the module docstring): any session may call it.

    `name`, `parent` and `records` (what each record is) make the same paged reader for
    another sequence of records: the alarm transitions (`Alarms/TransitionsSince`).
    """

    async def audit_since(after_seq: int, max_records: int) -> list[ua.Variant]:
        records, last_seq, log_id = read(after_seq, max_records)
        return [
            ua.Variant(records, ua.VariantType.String, is_array=True),
            ua.Variant(last_seq, ua.VariantType.UInt64),
            ua.Variant(log_id, ua.VariantType.String),
        ]

    outputs = [
        _argument(
            "Records",
            ua.ObjectIds.String,
            records
            or "One JSON object per record, in order, with the PlantAuditEventType field names "
            "(AuditSeq, User, Action, Target, OldValue, NewValue, Reason, Accepted, Result, "
            "Severity, Message) and Time (ISO 8601 UTC, the event's Time)",
            array=True,
        ),
        _argument("LastSeq", ua.ObjectIds.UInt64, "The sequence number of the newest record"),
        _argument(
            "LogId", ua.ObjectIds.String, "Names this audit log; a restarted server has a new one"
        ),
    ]
    ns = nodes.namespace
    owner = server.get_node(parent if parent is not None else nodes.site)
    prefix = parent.Identifier if parent is not None else site_id
    method: Node = await owner.add_method(
        ua.NodeId(f"{prefix}.{name}", ns),
        ua.QualifiedName(name, ns),
        _answering(audit_since, AUDIT_SINCE_PARAMS, name),
        [p.argument() for p in AUDIT_SINCE_PARAMS],
        outputs,
    )
    return method


def _fault_refusal(spec: FaultSpec, why: str) -> Refusal:
    """Which argument the twin refused an injection for, by checking it against the catalogue."""
    ftype = CATALOGUE.get(spec.kind)
    if ftype is None:
        return Refusal(ua.StatusCodes.BadInvalidArgument, why, 0)
    if "already active" in why:
        return Refusal(ua.StatusCodes.BadInvalidState, why)
    if spec.magnitude is not None and not (
        math.isfinite(spec.magnitude) and ftype.low <= spec.magnitude <= ftype.high
    ):
        return Refusal(ua.StatusCodes.BadOutOfRange, why, 2)
    if not (math.isfinite(spec.duration_s) and spec.duration_s >= 0):
        return Refusal(ua.StatusCodes.BadOutOfRange, why, 3)
    return Refusal(ua.StatusCodes.BadInvalidArgument, why, 1)


def _answering(
    handler: Callable[..., Awaitable[list[ua.Variant]]], params: Sequence[Param], name: str
) -> Callable[..., Awaitable[ua.CallMethodResult]]:
    """Wrap a handler: parse its arguments, and turn a Refusal into a Bad result."""

    async def method(parent: ua.NodeId, *args: ua.Variant) -> ua.CallMethodResult:
        try:
            values = _parse(args, params)
            outputs = await handler(*values)
        except Refusal as refusal:
            log.info("%s refused: %s", name, clip(refusal.message, 300))
            return _refused(refusal, len(args))
        except Exception:  # a bug of ours must not take the server down
            log.exception("%s failed", name)
            return _refused(
                Refusal(
                    ua.StatusCodes.BadInternalError, f"{name} failed inside the server; see its log"
                ),
                len(args),
            )
        return ua.CallMethodResult(OutputArguments=outputs)

    return method


def _parse(args: Sequence[ua.Variant], params: Sequence[Param]) -> list[Any]:
    if len(args) > len(params):
        raise Refusal(
            ua.StatusCodes.BadTooManyArguments,
            f"expected at most {len(params)} arguments "
            f"({', '.join(p.name for p in params) or 'none'}), got {len(args)}",
        )
    values: list[Any] = []
    for i, param in enumerate(params):
        if i >= len(args):
            if not param.optional:
                raise Refusal(
                    ua.StatusCodes.BadArgumentsMissing, f"argument {param.name} is missing"
                )
            values.append(param.default)
            continue
        values.append(_convert(args[i], param, i))
    return values


def _convert(arg: ua.Variant, param: Param, index: int) -> Any:
    vtype, value = arg.VariantType, arg.Value
    if isinstance(value, list):
        raise Refusal(ua.StatusCodes.BadTypeMismatch, f"{param.name} must be a single value", index)
    if param.datatype == ua.ObjectIds.BaseDataType:  # any scalar: the twin checks its type
        if vtype not in _NUMBER_TYPES | {ua.VariantType.Boolean, ua.VariantType.String}:
            raise Refusal(
                ua.StatusCodes.BadTypeMismatch,
                f"{param.name} must be a number, boolean or string, got {vtype.name}",
                index,
            )
        return value
    if param.datatype == ua.ObjectIds.String:
        if vtype is ua.VariantType.Null:
            return param.default if param.optional else ""
        if vtype is not ua.VariantType.String:
            raise Refusal(
                ua.StatusCodes.BadTypeMismatch,
                f"{param.name} must be a String, got {vtype.name}",
                index,
            )
        return value or ""
    if param.datatype == ua.ObjectIds.DateTime:
        if vtype is not ua.VariantType.DateTime or not isinstance(value, datetime):
            raise Refusal(
                ua.StatusCodes.BadTypeMismatch,
                f"{param.name} must be a DateTime, got {vtype.name}",
                index,
            )
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # UTC on the wire
    if param.datatype == ua.ObjectIds.Double:
        if vtype not in _NUMBER_TYPES:
            raise Refusal(
                ua.StatusCodes.BadTypeMismatch,
                f"{param.name} must be a number, got {vtype.name}",
                index,
            )
        return float(value)
    if vtype not in _INTEGER_TYPES:
        raise Refusal(
            ua.StatusCodes.BadTypeMismatch,
            f"{param.name} must be an integer, got {vtype.name}",
            index,
        )
    if value < 0:
        raise Refusal(ua.StatusCodes.BadOutOfRange, f"{param.name} must not be negative", index)
    return int(value)


def _refused(refusal: Refusal, n_args: int) -> ua.CallMethodResult:
    blamed = refusal.argument
    if blamed is not None and blamed >= n_args:
        blamed = None
    results = [
        ua.StatusCode(refusal.status if i == blamed else ua.StatusCodes.Good) for i in range(n_args)
    ]
    diagnostics = [ua.DiagnosticInfo() for _ in range(n_args)] or [ua.DiagnosticInfo()]
    diagnostics[blamed or 0].AdditionalInfo = clip(refusal.message)
    return ua.CallMethodResult(
        StatusCode=ua.StatusCode(refusal.status),
        InputArgumentResults=results,
        InputArgumentDiagnosticInfos=diagnostics,
    )


def _argument(name: str, datatype: int, description: str, array: bool = False) -> ua.Argument:
    argument = ua.Argument()
    argument.Name = name
    argument.DataType = ua.NodeId(datatype)
    argument.ValueRank = ua.ValueRank.OneDimension if array else ua.ValueRank.Scalar
    argument.ArrayDimensions = [0] if array else []
    argument.Description = ua.LocalizedText(description)
    return argument
