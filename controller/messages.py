"""What the controller says on MQTT: commands, alarm and audit events, and its mode switch.

Pure conversions between the supervisor's `Action`/`Alarm` and the v1 payloads of
`core.payload`, so the service only moves bytes.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

from controller.supervisor import Action, Alarm
from core.payload import CommandReply, CommandRequest, Event, Scalar, window_text
from core.text import MAX_NAME_CHARS, MAX_REASON_CHARS, clip, shown

SOURCE = "controller"  # Event.source of everything the controller records
MODES = ("auto", "manual")
MAX_MODE_BYTES = 4096  # a mode switch is a word or a small JSON object; larger is refused


class ModeError(ValueError):
    """A mode switch payload the controller cannot follow; the message says why."""


def request_of(action: Action) -> CommandRequest:
    """The command request that carries out an action."""
    if action.kind == "line":
        return CommandRequest("line", action=str(action.target), reason=action.reason)
    if action.kind == "setpoint":
        value = action.value
        if not (value is None or isinstance(value, bool | int | float | str)):
            value = str(value)
        return CommandRequest("setpoint", tag=action.target, value=value, reason=action.reason)
    if action.kind == "quarantine":
        start, end = action.value
        return CommandRequest(
            "quarantine", start_ns=time_ns(start), end_ns=time_ns(end), reason=action.reason
        )
    raise ValueError(f"the controller cannot send a {action.kind!r} action")


def time_ns(plant_s: float) -> int:
    """Plant time in seconds (the telemetry's source time) as payload nanoseconds."""
    return max(round(plant_s * 1e9), 0)


class EventSequence:
    """Per-kind event sequence numbers, increasing across restarts.

    They start from the wall clock in milliseconds, so a restarted controller continues above
    the numbers it used before instead of repeating them.
    """

    def __init__(self, start: int | None = None) -> None:
        first = start if start is not None else time.time_ns() // 1_000_000
        self._counters: dict[str, itertools.count[int]] = {}
        self._first = first

    def next(self, kind: str) -> int:
        counter = self._counters.setdefault(kind, itertools.count(self._first))
        return next(counter)


def alarm_event(site: str, seq: int, alarm: Alarm) -> Event:
    """An alarm raised or cleared by the supervisor."""
    return Event(
        site=site,
        kind="alarm",
        seq=seq,
        time_ns=time_ns(alarm.time),
        source=SOURCE,
        user=SOURCE,
        action="raise" if alarm.raised else "clear",
        target=alarm.name,
        reason=alarm.message,
        accepted=True,
        result="raised" if alarm.raised else "cleared",
    )


@dataclass(frozen=True, slots=True)
class SentCommand:
    """A command on its way: what was asked, at what plant time, and the value it replaces."""

    request: CommandRequest
    plant_time: float
    old: Scalar
    user: str


def command_event(
    site: str, seq: int, sent: SentCommand, reply: CommandReply | None, timeout_s: float
) -> Event:
    """The audit record of one command and its result (or that no result came)."""
    request = sent.request
    if request.kind == "setpoint":
        action, target, new = "write", request.tag, request.value
    elif request.kind == "quarantine":
        action, target = "quarantine", "genealogy"
        new = window_text(request.start_ns, request.end_ns)
    else:
        action, target, new = request.action, "line", None
    if reply is None:
        accepted, result = False, f"no reply within {timeout_s:g} s"
    else:
        accepted = reply.accepted
        result = "accepted" if reply.accepted else clip(f"{reply.code}: {reply.reason}")
    return Event(
        site=site,
        kind="audit",
        seq=seq,
        time_ns=time_ns(sent.plant_time),
        source=SOURCE,
        user=sent.user,
        action=action,
        target=target,
        old=sent.old,
        new=new,
        reason=request.reason,
        accepted=accepted,
        result=result,
    )


def note_event(
    site: str, seq: int, plant_s: float, user: str, action: str, reason: str, **extra: Any
) -> Event:
    """An audit record of the controller's own doings: mode switches, holds."""
    return Event(
        site=site,
        kind="audit",
        seq=seq,
        time_ns=time_ns(plant_s),
        source=SOURCE,
        user=user,
        action=action,
        target="controller",
        reason=reason,
        **extra,
    )


@dataclass(frozen=True, slots=True)
class ModeSwitch:
    """A request to run the controller in auto (commands sent) or manual (watching only)."""

    mode: str
    user: str = ""
    reason: str = ""

    @property
    def enabled(self) -> bool:
        return self.mode == "auto"


def encode_mode(switch: ModeSwitch) -> bytes:
    body = {"v": 1, "mode": switch.mode, "user": switch.user, "reason": switch.reason}
    return json.dumps(body, separators=(",", ":")).encode()


def decode_mode(data: bytes) -> ModeSwitch:
    """Parse a mode switch: `{"v": 1, "mode": "auto", "user": ..., "reason": ...}`, or the
    bare word `auto` or `manual`.

    It is a retained message anyone with the operator's rights can set, read again at every
    (re)connection: any bytes at all raise `ModeError` with a short reason, never anything
    else (huge or deeply nested JSON, numbers too long to read, invalid UTF-8, wrong types).
    """
    if len(data) > MAX_MODE_BYTES:
        raise ModeError(f"mode switch of {len(data):,} bytes; at most {MAX_MODE_BYTES:,}")
    try:
        text = data.decode().strip()
    except UnicodeDecodeError:
        raise ModeError("mode switch is not UTF-8") from None
    if text in MODES:
        return ModeSwitch(text)
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, nested too deeply, a number too long
        raise ModeError(f"mode switch must be one of {', '.join(MODES)} or JSON") from None
    if not isinstance(obj, dict) or type(obj.get("v")) is not int or obj["v"] != 1:
        raise ModeError("mode switch JSON must be an object with v = 1")
    mode, user, reason = obj.get("mode"), obj.get("user", ""), obj.get("reason", "")
    if not isinstance(mode, str) or mode not in MODES:
        raise ModeError(f"mode must be one of {', '.join(MODES)}, got {shown(mode, 40)}")
    if not isinstance(user, str) or not isinstance(reason, str):
        raise ModeError("mode switch user and reason must be strings")
    if len(user) > MAX_NAME_CHARS:
        raise ModeError(f"mode switch user of {len(user):,} characters; at most {MAX_NAME_CHARS}")
    if len(reason) > MAX_REASON_CHARS:
        raise ModeError(
            f"mode switch reason of {len(reason):,} characters; at most {MAX_REASON_CHARS} "
            "(refused, not cut: the audit trail keeps a reason whole)"
        )
    return ModeSwitch(mode, user, reason)
