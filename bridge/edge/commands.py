"""Commands from MQTT, carried out on the OPC UA server as the edge's gateway account.

A request arrives on `pcmm/v1/<site>/command/<kind>/<user>`; the broker's ACL guarantees the
user segment is the publisher's own MQTT user name, so that is the requester. The edge
validates it (payload schema, then the tag registry for setpoints and the longest window for a
quarantine), carries it out as a method call of `Objects/<site>/Commands` with
`OnBehalfOf=<user>` (so the twin's audit trail names the requester and the edge; the server
honours it because the edge's account has the `gateway` role), and answers a `CommandReply`
with the request's correlation data on the requester's own reply topic, `reply/<user>`. The
request's MQTT 5 response topic is only followed when it is that topic: a reply goes nowhere
else, whatever the request names (a wildcard such as `pcmm/v1/#`, another user's reply topic,
anything at all), so a requester can neither make the edge publish where it may not nor read
someone else's answers. Every request and its outcome are also audit events of the edge.
Replies and events go through the outbox.

Size limits: a payload over `MAX_COMMAND_BYTES` is refused unread, a reason longer than
`core.text.MAX_REASON_CHARS` is refused (code `invalid`), never cut, and so is a name (tag,
fault, module) longer than `core.text.MAX_NAME_CHARS`; whatever a reply or an audit event
repeats of a request (a tag id that does not exist, a refused value) is cut to
`core.text.MAX_FIELD_CHARS` with a marker, so no request can make a message the broker
refuses. Bad input of any kind is an `invalid` reply, never an error of the edge.

An alarm command (`command/alarm/<user>`, `{"action", "alarm", "reason", "duration_s"}`)
acknowledges, confirms, comments, shelves (for `duration_s` plant seconds, or one-shot),
unshelves, or takes out of / puts back in service an alarm by the standard Part 9 methods of
its condition, the reason as the comment and the requester as `OnBehalfOf`; acknowledge,
confirm and comment name the newest event of the condition the edge has seen (it asks for
ConditionRefresh on every connection). `raise` and `clear` report a diagnosis of the
controller (`Alarms/Report`): the controller's alarms have the same lifecycle.

A quarantine (`command/quarantine/<user>`, `{"start_ns", "end_ns", "reason"}`: the press-time
window in the telemetry's UTC source times) becomes `Quarantine(StartTime, EndTime, Reason,
OnBehalfOf)`; its reply's detail is the window flagged and the tablets it held back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from asyncua import Client, ua

from bridge.edge.opcua import COMMANDS, OpcUaSource
from bridge.operator import setpoint_variant
from core.commands import QUARANTINE_MAX_S
from core.payload import (
    CommandReply,
    CommandRequest,
    Event,
    PayloadError,
    decode_command,
    encode_reply,
    window_text,
)
from core.tags import DataType, Tag, TagRegistry
from core.text import MAX_NAME_CHARS, MAX_REASON_CHARS, clip, shown
from core.timebase import from_ns, to_ns
from core.topics import ROOT

CONNECT_WAIT_S = 5.0  # how long a command waits for the OPC UA link before it is refused
# The largest command payload read, bytes: a command is a small JSON object (its longest field,
# a reason of MAX_REASON_CHARS, is at most 4 kB of UTF-8); a larger one is refused unread.
MAX_COMMAND_BYTES = 64 * 1024

#: OPC UA status of a refused call -> the reply's code.
STATUS_CODES = {
    ua.StatusCodes.BadOutOfRange: "range",
    ua.StatusCodes.BadTypeMismatch: "type",
    ua.StatusCodes.BadInvalidState: "state",
    ua.StatusCodes.BadNotWritable: "not_writable",
    ua.StatusCodes.BadNodeIdUnknown: "unknown_tag",
    ua.StatusCodes.BadUserAccessDenied: "denied",
    ua.StatusCodes.BadInvalidArgument: "invalid",
    ua.StatusCodes.BadConditionBranchAlreadyAcked: "state",
    ua.StatusCodes.BadConditionBranchAlreadyConfirmed: "state",
    ua.StatusCodes.BadConditionAlreadyShelved: "state",
    ua.StatusCodes.BadConditionNotShelved: "state",
    ua.StatusCodes.BadEventIdUnknown: "state",
    ua.StatusCodes.BadShelvingTimeOutOfRange: "range",
    ua.StatusCodes.BadNodeIdInvalid: "unknown_alarm",
}
ALARMS = "Alarms"
#: Alarm command actions -> (the Part 9 method called, on the condition's ShelvingState or not,
#: whether it needs the condition's newest EventId).
ALARM_METHODS: dict[str, tuple[int, bool, bool]] = {
    "acknowledge": (ua.ObjectIds.AcknowledgeableConditionType_Acknowledge, False, True),
    "confirm": (ua.ObjectIds.AcknowledgeableConditionType_Confirm, False, True),
    "comment": (ua.ObjectIds.ConditionType_AddComment, False, True),
    "one_shot_shelve": (ua.ObjectIds.ShelvedStateMachineType_OneShotShelve2, True, False),
    "timed_shelve": (ua.ObjectIds.ShelvedStateMachineType_TimedShelve2, True, False),
    "unshelve": (ua.ObjectIds.ShelvedStateMachineType_Unshelve2, True, False),
    "remove_from_service": (ua.ObjectIds.AlarmConditionType_RemoveFromService2, False, False),
    "place_in_service": (ua.ObjectIds.AlarmConditionType_PlaceInService2, False, False),
}


@dataclass(frozen=True, slots=True)
class Incoming:
    """A command message as received (a payload over MAX_COMMAND_BYTES is not kept)."""

    topic: str
    payload: bytes
    response_topic: str | None
    correlation: bytes | None
    size: int = -1  # the payload's size as received; -1: len(payload)

    @classmethod
    def received(
        cls, topic: str, payload: bytes, response_topic: str | None, correlation: bytes | None
    ) -> Incoming:
        """As taken from the network: an oversized payload is dropped here, its size kept,
        so that a flood of large requests cannot fill the memory while they wait."""
        if len(payload) > MAX_COMMAND_BYTES:
            return cls(topic, b"", response_topic, correlation, len(payload))
        return cls(topic, payload, response_topic, correlation)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a command: the reply to send and the audit event fields."""

    user: str
    kind: str
    request: CommandRequest | None
    reply: CommandReply
    response_topic: str
    correlation: bytes | None
    redirected: bool = False  # the request named another response topic: not followed


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
        """Carry out one command; never raises (a failure is a refused reply).

        The reply goes to `reply_topic`, the requester's own, whatever response topic the
        request named (see the module docstring).
        """
        request: CommandRequest | None = None
        try:
            if incoming.size > MAX_COMMAND_BYTES:
                too_big = f"a command of {incoming.size:,} bytes; at most {MAX_COMMAND_BYTES:,}"
                raise Refused("invalid", too_big)
            request = _decode(incoming.payload, kind)
            accepted_reason, detail = await self._run(request, user)
            reply = CommandReply(
                accepted=True,
                code="accepted",
                reason=clip(accepted_reason),
                time_ns=time.time_ns(),
                detail=detail,
            )
        except Refused as refusal:
            reply = CommandReply(False, refusal.code, clip(refusal.reason), time.time_ns())
        except Exception as error:  # the OPC UA link failed mid-call, or a bug: say so
            self._log.warning("command %s from %s failed: %r", clip(kind, 40), user, error)
            reply = CommandReply(
                False, "unavailable", clip(f"the plant did not answer: {error!r}"), time.time_ns()
            )
        return Outcome(
            user=user,
            kind=kind,
            request=request,
            reply=reply,
            response_topic=reply_topic,
            correlation=incoming.correlation,
            redirected=bool(incoming.response_topic) and incoming.response_topic != reply_topic,
        )

    async def _run(self, request: CommandRequest, user: str) -> tuple[str, Any]:
        if len(user) > MAX_NAME_CHARS:
            too_long = f"user name of {len(user):,} characters; at most {MAX_NAME_CHARS}"
            raise Refused("invalid", too_long)
        if len(request.reason) > MAX_REASON_CHARS:
            raise Refused(
                "invalid",
                f"reason is {len(request.reason):,} characters long; at most {MAX_REASON_CHARS} "
                "(refused, not cut: the audit trail keeps a reason whole)",
            )
        for field in (
            "tag",
            "fault",
            "target",
            "alarm",
        ):  # names: nothing the plant knows is this long
            name = getattr(request, field)
            if len(name) > MAX_NAME_CHARS:
                too_long = f"{field} of {len(name):,} characters; at most {MAX_NAME_CHARS}"
                raise Refused("invalid", too_long)
        if request.kind == "setpoint":
            tag = self.registry.get(request.tag)
            if tag is None:
                raise Refused("unknown_tag", f"unknown tag {shown(request.tag)}")
            if not tag.writable:
                raise Refused(
                    "not_writable", f"{tag.id} is a {tag.access} tag; only setpoints can be written"
                )
            served = await self.source.eu_range(await self._client(), tag.id)
            if served is not None:  # the server's range for this site's equipment
                tag = dataclasses.replace(tag, low=served[0], high=served[1])
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
        if request.kind == "alarm":
            return await self._alarm(request, user)
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
                ua.Variant(from_ns(request.start_ns), ua.VariantType.DateTime),
                ua.Variant(from_ns(request.end_ns), ua.VariantType.DateTime),
                ua.Variant(request.reason, ua.VariantType.String),
                ua.Variant(user, ua.VariantType.String),
            ],
        )
        start, end = (to_ns(v.Value) for v in out[:2])
        tablets = int(out[2].Value)
        return f"quarantined {tablets} tablets pressed {window_text(start, end)}", {
            "start_ns": start,
            "end_ns": end,
            "tablets": tablets,
        }

    async def _alarm(self, request: CommandRequest, user: str) -> tuple[str, Any]:
        """An alarm action by the Part 9 methods (the reason is the comment), or the
        controller's raise/clear of its own diagnosis by `Alarms/Report`."""
        alarms = f"{self.site}.{ALARMS}"
        comment = ua.Variant(ua.LocalizedText(request.reason), ua.VariantType.LocalizedText)
        on_behalf = ua.Variant(user, ua.VariantType.String)
        if request.action in ("raise", "clear"):
            await self._call(
                "Report",
                [
                    ua.Variant(request.alarm, ua.VariantType.String),
                    ua.Variant(request.action == "raise", ua.VariantType.Boolean),
                    ua.Variant(request.reason, ua.VariantType.String),
                    on_behalf,
                ],
                parent=alarms,
                method_id=f"{alarms}.Report",
            )
            done = "raised" if request.action == "raise" else "cleared"
            return f"alarm {request.alarm}: {done}", {"alarm": request.alarm}
        action = request.action
        if action == "shelve":
            action = "timed_shelve" if request.duration_s > 0 else "one_shot_shelve"
        method, on_shelving, needs_event = ALARM_METHODS[action]
        args: list[ua.Variant] = []
        if needs_event:
            event_id = self.source.latest_event_ids.get(request.alarm)
            if event_id is None:
                raise Refused(
                    "state", f"no event of {shown(request.alarm)} seen: nothing to {action}"
                )
            args.append(ua.Variant(event_id, ua.VariantType.ByteString))
        if action == "timed_shelve":
            args.append(ua.Variant(request.duration_s * 1000.0, ua.VariantType.Double))
        args += [comment, on_behalf]
        condition = f"{alarms}.{request.alarm}"
        await self._call(
            "",
            args,
            parent=f"{condition}.ShelvingState" if on_shelving else condition,
            standard_method=method,
        )
        return f"alarm {request.alarm}: {request.action} done", {"alarm": request.alarm}

    async def _client(self) -> Client:
        # A command that arrives while the link is being (re)made waits a moment for it.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONNECT_WAIT_S):  # not wait_for: see opcua.py
                await self.source.connected.wait()
        client = self.source.client
        if client is None:
            raise Refused("unavailable", "the edge is not connected to the OPC UA server")
        return client

    async def _call(
        self,
        method: str,
        args: list[ua.Variant],
        *,
        parent: str = "",
        method_id: str = "",
        standard_method: int | None = None,
    ) -> list[ua.Variant]:
        """Call a method of `Objects/<site>/Commands` by name, or any method on `parent`
        (its NodeId in the plant's namespace: `method_id`, or the standard `standard_method`)."""
        client = await self._client()
        ns = self.source.namespace
        request = ua.CallMethodRequest()
        request.ObjectId = ua.NodeId(parent or f"{self.site}.{COMMANDS}", ns)
        if standard_method is not None:
            request.MethodId = ua.NodeId(standard_method)
        else:
            request.MethodId = ua.NodeId(method_id or f"{self.site}.{COMMANDS}.{method}", ns)
        request.InputArguments = args
        result = (await client.uaclient.call([request]))[0]
        if not result.StatusCode.is_good():
            code = STATUS_CODES.get(result.StatusCode.value, "error")
            diagnostics = result.InputArgumentDiagnosticInfos or []
            why = " ".join(d.AdditionalInfo for d in diagnostics if d and d.AdditionalInfo)
            raise Refused(code, why or result.StatusCode.name)
        return list(result.OutputArguments or [])


def _decode(payload: bytes, kind: str) -> CommandRequest:
    """The request, or Refused("invalid") for a payload of any shape that is not one."""
    try:
        return decode_command(payload, kind)
    except PayloadError as error:
        raise Refused("invalid", str(error)) from None
    except Exception as error:  # bad input raises many kinds: huge numbers, deep nesting, ...
        why = f"not a {clip(kind, 40)} command: {type(error).__name__}"
        raise Refused("invalid", why) from None


def audit_events(site: str, outcome: Outcome, seq: int, time_ns: int) -> list[Event]:
    """The edge's two audit events of a command: received, then its result.

    Every text a request brings is cut to `MAX_FIELD_CHARS` with a marker: a refused request
    of any size is still recorded, as a bounded record.
    """
    request = outcome.request
    action = f"command:{outcome.kind}"
    target: str = ""
    new: Any = None
    if request is not None:
        if request.kind == "setpoint":
            target, new = request.tag, request.value
        elif request.kind == "line":
            action, target = f"{action}:{request.action}", "line"
        elif request.kind == "quarantine":
            target, new = "genealogy", window_text(request.start_ns, request.end_ns)
        elif request.kind == "alarm":
            action, target = f"{action}:{request.action}", request.alarm
            new = request.duration_s or None
        else:
            action = f"{action}:{request.action}"
            target = request.fault or (str(request.fault_id) if request.fault_id else "")
            new = request.magnitude
    reply = outcome.reply
    received = "received"
    if outcome.redirected:
        received += f"; its response topic was not followed: replied on {outcome.response_topic}"
    common: dict[str, Any] = {
        "site": site,
        "kind": "audit",
        "source": "edge",
        "user": clip(outcome.user),
        "action": clip(action),
        "target": clip(target),
        "new": clip(new) if isinstance(new, str) else new,
        "reason": clip(request.reason) if request else "",
    }
    return [
        Event(seq=seq, time_ns=time_ns, accepted=True, result=clip(received), **common),
        Event(
            seq=seq + 1,
            time_ns=reply.time_ns,
            accepted=reply.accepted,
            result=clip(f"{reply.code}: {reply.reason}"),
            **common,
        ),
    ]


def reply_payload(outcome: Outcome) -> bytes:
    return encode_reply(outcome.reply)
