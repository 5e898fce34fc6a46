"""Commands from MQTT, carried out on the OPC UA server as the edge's operator account.

A request arrives on `pcmm/v1/<site>/command/<kind>/<user>`; the broker's ACL guarantees the
user segment is the publisher's own MQTT user name, so that is the requester. The edge
validates it (payload schema, then the tag registry for setpoints and the longest window for a
quarantine), carries it out as a method call of `Objects/<site>/Commands` with
`OnBehalfOf=<user>` (so the twin's audit trail names the requester and the edge), and answers
a `CommandReply` on the request's MQTT 5 response topic with its correlation data (or on
`reply/<user>` when it named none). Every request and its outcome are also audit events of the
edge. Replies and events go through the outbox.

A quarantine (`command/quarantine/<user>`, `{"start_ns", "end_ns", "reason"}`: the press-time
window in the telemetry's UTC source times) becomes `Quarantine(StartTime, EndTime, Reason,
OnBehalfOf)`; its reply's detail is the window flagged and the tablets it held back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import ua

from bridge.edge.opcua import COMMANDS, OpcUaSource
from plant.operator import setpoint_variant
from plant.payload import (
    CommandReply,
    CommandRequest,
    Event,
    PayloadError,
    decode_command,
    encode_reply,
    window_text,
)
from plant.tags import DataType, Tag, TagRegistry
from plant.topics import ROOT
from twin.commands import QUARANTINE_MAX_S

CONNECT_WAIT_S = 5.0  # how long a command waits for the OPC UA link before it is refused
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: OPC UA status of a refused call -> the reply's code.
STATUS_CODES = {
    ua.StatusCodes.BadOutOfRange: "range",
    ua.StatusCodes.BadTypeMismatch: "type",
    ua.StatusCodes.BadInvalidState: "state",
    ua.StatusCodes.BadNotWritable: "not_writable",
    ua.StatusCodes.BadNodeIdUnknown: "unknown_tag",
    ua.StatusCodes.BadUserAccessDenied: "denied",
    ua.StatusCodes.BadInvalidArgument: "invalid",
}


@dataclass(frozen=True, slots=True)
class Incoming:
    """A command message as received."""

    topic: str
    payload: bytes
    response_topic: str | None
    correlation: bytes | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a command: the reply to send and the audit event fields."""

    user: str
    kind: str
    request: CommandRequest | None
    reply: CommandReply
    response_topic: str
    correlation: bytes | None


def _check_code(tag: Tag, value: Any) -> str:
    """Why `Tag.check` refused a value: "type" (wrong kind of value) or "range"."""
    if isinstance(value, bool):
        return "range" if tag.data_type is DataType.BOOL else "type"
    if tag.data_type is DataType.BOOL:
        return "type"
    if tag.data_type is DataType.ENUM:
        return "range" if isinstance(value, str | int) else "type"
    return "range" if isinstance(value, int | float) else "type"


class Refused(Exception):  # noqa: N818 - an answer, not a failure of ours
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class CommandExecutor:
    """Validates and carries out commands; see the module docstring."""

    def __init__(self, site: str, registry: TagRegistry, source: OpcUaSource) -> None:
        self.site = site
        self.registry = registry
        self.source = source
        self._log = logging.getLogger("bridge.edge.commands")

    def parse_topic(self, topic: str) -> tuple[str, str] | None:
        """(kind, user) of a command topic of this site, or None."""
        parts = topic.split("/")
        root = ROOT.split("/")
        if len(parts) != len(root) + 4 or parts[: len(root)] != root:
            return None
        site, command, kind, user = parts[len(root) :]
        if site != self.site or command != "command" or not user:
            return None
        return kind, user

    async def execute(self, incoming: Incoming, reply_topic: str, user: str, kind: str) -> Outcome:
        """Carry out one command; never raises (a failure is a refused reply)."""
        request: CommandRequest | None = None
        try:
            request = decode_command(incoming.payload, kind)
            accepted_reason, detail = await self._run(request, user)
            reply = CommandReply(True, "accepted", accepted_reason, time.time_ns(), detail)
        except PayloadError as error:
            reply = CommandReply(False, "invalid", str(error), time.time_ns())
        except Refused as refusal:
            reply = CommandReply(False, refusal.code, refusal.reason, time.time_ns())
        except Exception as error:  # the OPC UA link failed mid-call, or a bug: say so
            self._log.warning("command %s from %s failed: %r", kind, user, error)
            reply = CommandReply(
                False, "unavailable", f"the plant did not answer: {error!r}", time.time_ns()
            )
        response = incoming.response_topic or reply_topic
        return Outcome(user, kind, request, reply, response, incoming.correlation)

    async def _run(self, request: CommandRequest, user: str) -> tuple[str, Any]:
        if request.kind == "setpoint":
            tag = self.registry.get(request.tag)
            if tag is None:
                raise Refused("unknown_tag", f"unknown tag {request.tag!r}")
            if not tag.writable:
                raise Refused(
                    "not_writable", f"{tag.id} is a {tag.access} tag; only setpoints can be written"
                )
            _, why = tag.check(request.value)
            if why is not None:
                raise Refused(_check_code(tag, request.value), why)
            out = await self._call(
                "WriteSetpoint",
                [
                    ua.Variant(request.tag, ua.VariantType.String),
                    setpoint_variant(request.value),
                    ua.Variant(request.reason, ua.VariantType.String),
                    ua.Variant(user, ua.VariantType.String),
                ],
            )
            old, new = (json.loads(v.Value) for v in out)
            return f"{tag.id}: {old!r} -> {new!r}", {"old": old, "new": new}
        if request.kind == "line":
            out = await self._call(
                request.action.capitalize(),
                [
                    ua.Variant(request.reason, ua.VariantType.String),
                    ua.Variant(user, ua.VariantType.String),
                ],
            )
            state = out[0].Value
            return f"line {request.action}: now {state}", {"state": state}
        if request.kind == "quarantine":
            return await self._quarantine(request, user)
        if request.action == "inject":
            magnitude = math.nan if request.magnitude is None else request.magnitude
            out = await self._call(
                "InjectFault",
                [
                    ua.Variant(request.fault, ua.VariantType.String),
                    ua.Variant(request.target, ua.VariantType.String),
                    ua.Variant(magnitude, ua.VariantType.Double),
                    ua.Variant(request.duration_s, ua.VariantType.Double),
                    ua.Variant(request.reason, ua.VariantType.String),
                    ua.Variant(user, ua.VariantType.String),
                ],
            )
            fault_id = int(out[0].Value)
            return f"fault {fault_id} injected", {"fault_id": fault_id}
        if request.action == "clear":
            await self._call(
                "ClearFault",
                [
                    ua.Variant(request.fault_id, ua.VariantType.UInt32),
                    ua.Variant(request.reason, ua.VariantType.String),
                    ua.Variant(user, ua.VariantType.String),
                ],
            )
            return f"fault {request.fault_id} cleared", {"fault_id": request.fault_id}
        out = await self._call("ListFaults", [])
        ids, kinds, targets, magnitudes, states = (v.Value or [] for v in out)
        faults = [
            {"fault_id": i, "kind": k, "target": t, "magnitude": m, "state": st}
            for i, k, t, m, st in zip(ids, kinds, targets, magnitudes, states, strict=True)
        ]
        return f"{len(faults)} faults", faults

    async def _quarantine(self, request: CommandRequest, user: str) -> tuple[str, Any]:
        span_s = (request.end_ns - request.start_ns) / 1e9
        if span_s > QUARANTINE_MAX_S:
            raise Refused("range", f"window of {span_s:g} s is longer than {QUARANTINE_MAX_S:g} s")
        out = await self._call(
            "Quarantine",
            [
                ua.Variant(_utc(request.start_ns), ua.VariantType.DateTime),
                ua.Variant(_utc(request.end_ns), ua.VariantType.DateTime),
                ua.Variant(request.reason, ua.VariantType.String),
                ua.Variant(user, ua.VariantType.String),
            ],
        )
        start, end = (_ns(v.Value) for v in out[:2])
        tablets = int(out[2].Value)
        return f"quarantined {tablets} tablets pressed {window_text(start, end)}", {
            "start_ns": start,
            "end_ns": end,
            "tablets": tablets,
        }

    async def _call(self, method: str, args: list[ua.Variant]) -> list[ua.Variant]:
        # A command that arrives while the link is being (re)made waits a moment for it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.source.connected.wait(), CONNECT_WAIT_S)
        client = self.source.client
        if client is None:
            raise Refused("unavailable", "the edge is not connected to the OPC UA server")
        ns = self.source.namespace
        request = ua.CallMethodRequest()
        request.ObjectId = ua.NodeId(f"{self.site}.{COMMANDS}", ns)
        request.MethodId = ua.NodeId(f"{self.site}.{COMMANDS}.{method}", ns)
        request.InputArguments = args
        result = (await client.uaclient.call([request]))[0]
        if not result.StatusCode.is_good():
            code = STATUS_CODES.get(result.StatusCode.value, "error")
            diagnostics = result.InputArgumentDiagnosticInfos or []
            why = " ".join(d.AdditionalInfo for d in diagnostics if d and d.AdditionalInfo)
            raise Refused(code, why or result.StatusCode.name)
        return list(result.OutputArguments or [])


def _utc(ns: int) -> datetime:
    return EPOCH + timedelta(microseconds=ns // 1000)


def _ns(when: datetime) -> int:
    """Payload nanoseconds of an OPC UA DateTime (asyncua's may be naive: UTC on the wire)."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    delta = aware - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def audit_events(site: str, outcome: Outcome, seq: int, time_ns: int) -> list[Event]:
    """The edge's two audit events of a command: received, then its result."""
    request = outcome.request
    action = f"command:{outcome.kind}"
    target, new = "", None
    if request is not None:
        if request.kind == "setpoint":
            target, new = request.tag, request.value
        elif request.kind == "line":
            action, target = f"{action}:{request.action}", "line"
        elif request.kind == "quarantine":
            target, new = "genealogy", window_text(request.start_ns, request.end_ns)
        else:
            action = f"{action}:{request.action}"
            target = request.fault or (str(request.fault_id) if request.fault_id else "")
            new = request.magnitude
    reason = request.reason if request else ""
    reply = outcome.reply
    return [
        Event(
            site,
            "audit",
            seq,
            time_ns,
            "edge",
            outcome.user,
            action,
            target,
            None,
            new,
            reason,
            True,
            "received",
        ),
        Event(
            site,
            "audit",
            seq + 1,
            reply.time_ns,
            "edge",
            outcome.user,
            action,
            target,
            None,
            new,
            reason,
            reply.accepted,
            f"{reply.code}: {reply.reason}",
        ),
    ]


def reply_payload(outcome: Outcome) -> bytes:
    return encode_reply(outcome.reply)
