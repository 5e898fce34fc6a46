"""MQTT payloads, version 1: telemetry batches, events, commands and command results.

JSON, UTF-8, compact. Times are integer nanoseconds since the Unix epoch (UTC), the precision
InfluxDB stores. The JSON Schemas in `schemas/` document the same shapes for other consumers.

Decoding never trusts its input: anything malformed raises `PayloadError` with the reason, so a
consumer can dead-letter it instead of crashing. Every decoder here (and `decode_metrics` in
bridge/metrics.py) is wrapped by `decoder`, so whatever a bad payload makes Python raise on
the way (ValueError, OverflowError, RecursionError, UnicodeError, TypeError, KeyError, ...)
leaves as a `PayloadError` too. The JSON itself is read strictly (`parse_json`): UTF-8 only, no
NaN or Infinity (Python's json takes them; JSON has no such numbers), no number that overflows
a double (1e400 would read as infinity), integers within 64 bits (every integer of the plant is
a 64-bit quantity: ns times, sequence numbers, OPC UA Int64/UInt64, InfluxDB integers; a number
of hundreds of digits is refused before anything converts it), and no duplicate keys (which
one would count differs between parsers: a payload must mean one thing).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ParamSpec, TypeVar

from core.timebase import from_ns

VERSION = 1
QUALITIES = ("good", "uncertain", "bad")
Scalar = float | int | bool | str | None


MIN_INT = -(2**63)  # JSON integers are read as signed or unsigned 64-bit values
MAX_INT = 2**64 - 1
_MAX_INT_DIGITS = len(str(MAX_INT))  # a longer literal is refused before it is converted
MAX_REASON = 500  # characters of a Python error's message kept in a PayloadError

#: What bad input can make Python raise while a payload is read. `decoder` turns these into
#: `PayloadError`; anything else (a bug) is not bad input and propagates.
BAD_INPUT: tuple[type[Exception], ...] = (
    ValueError,  # json.JSONDecodeError and UnicodeDecodeError included
    OverflowError,
    RecursionError,
    UnicodeError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
)

_P = ParamSpec("_P")
_R = TypeVar("_R")


class PayloadError(ValueError):
    """A payload that does not follow the schema; the message says where."""


def decoder(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Make every error of bad input in `func` a `PayloadError` that names it."""

    @functools.wraps(func)
    def decode(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return func(*args, **kwargs)
        except PayloadError:
            raise
        except BAD_INPUT as error:
            text = f"{type(error).__name__}: {error}"
            raise PayloadError(f"cannot decode: {text[:MAX_REASON]}") from None

    return decode


def _refuse_constant(name: str) -> float:
    raise PayloadError(f"not JSON: {name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise PayloadError(f"not JSON: number {text[:40]} overflows a double")
    return value


def _int64(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise PayloadError(f"not JSON: an integer of {len(text)} characters is over 64 bits")
    value = int(text)
    if not MIN_INT <= value <= MAX_INT:
        raise PayloadError(f"not JSON: integer {value} is over 64 bits")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise PayloadError(f"not JSON: duplicate key {key[:40]!r}")
            seen.add(key)
    return obj


def parse_json(data: bytes | bytearray | memoryview | str) -> Any:
    """Strict JSON (see the module docstring); `PayloadError` says what is wrong."""
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
    except UnicodeDecodeError as error:
        raise PayloadError(f"not JSON: not UTF-8: {error}") from None
    try:
        obj = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_refuse_constant,
            parse_float=_finite,
            parse_int=_int64,
        )
    except json.JSONDecodeError as error:
        raise PayloadError(f"not JSON: {error}") from None
    except RecursionError:
        raise PayloadError("not JSON: nested too deeply") from None
    if "\\u" in text:  # only an escape can make a lone surrogate (the text is valid UTF-8)
        _check_unicode(obj)
    return obj


def _check_unicode(obj: Any) -> None:
    """Refuse a string with a lone surrogate (`"\\ud800"`): no UTF-8 encoder can write it."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise PayloadError("not JSON: a string holds a lone surrogate") from None


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one tag as the plant reported it."""

    tag: str  # registry tag id, `<module>.<name>`
    value: Scalar
    quality: str  # good | uncertain | bad
    source_ns: int  # when the plant measured it
    server_ns: int  # when the OPC UA server published it
    seq: int  # the edge's sample sequence number for this site, strictly increasing


@dataclass(frozen=True, slots=True)
class TelemetryBatch:
    """The samples of one module, as the edge publishes them."""

    site: str
    module: str
    sent_ns: int
    samples: tuple[Sample, ...]


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened: an audit record, an alarm, a state change or a fault."""

    site: str
    kind: str  # audit | alarm | state | fault
    seq: int  # per site and kind, from the source
    time_ns: int  # plant time of the event
    source: str  # who recorded it: twin, edge, controller, ...
    user: str = ""
    action: str = ""
    target: str = ""
    old: Scalar = None
    new: Scalar = None
    reason: str = ""
    accepted: bool = True
    result: str = ""
    # Audit records only (`core.audit_chain`): the audit log, the previous record's hash and
    # this record's; empty for other kinds.
    log: str = ""
    prev_hash: str = ""
    hash: str = ""
    # Alarm transitions only (`core.alarms`): the alarm's priority (OPC UA severity, 300-900),
    # its level (HighHigh, High, Low, LowLow, Active, or empty when normal) and its ISA-18.2
    # state after the transition (active_unacked, active_acked, rtn_unacked, normal, shelved,
    # out_of_service); `action` is the transition, `target` the alarm, `reason` the comment.
    priority: int = 0
    level: str = ""
    state: str = ""
    elapsed_s: float = 0.0  # an acknowledgement: plant seconds from the raise (time to ack)


ALARM_STATES = (
    "active_unacked",
    "active_acked",
    "rtn_unacked",
    "normal",
    "shelved",
    "out_of_service",
)


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def encode_batch(batch: TelemetryBatch) -> bytes:
    return _json(
        {
            "v": VERSION,
            "site": batch.site,
            "module": batch.module,
            "sent_ns": batch.sent_ns,
            # Field by field, in field order: `asdict` copies every value recursively, 35 times
            # the cost (10.8 us against 0.3 us a sample), 8 % of the edge's CPU at 20,000
            # samples/s (py-spy, bench.pipeline --tags 20000, issue 17).
            "samples": [
                {
                    "tag": s.tag,
                    "value": s.value,
                    "quality": s.quality,
                    "source_ns": s.source_ns,
                    "server_ns": s.server_ns,
                    "seq": s.seq,
                }
                for s in batch.samples
            ],
        }
    )


def encode_event(event: Event) -> bytes:
    obj = {"v": VERSION, **asdict(event)}
    for key in ("log", "prev_hash", "hash", "priority", "level", "state", "elapsed_s"):
        if not obj[key]:  # audit records and alarm transitions only: absent elsewhere
            del obj[key]
    return _json(obj)


def _load(data: bytes) -> dict[str, Any]:
    obj = parse_json(data)
    if not isinstance(obj, dict):
        raise PayloadError("not a JSON object")
    if obj.get("v") != VERSION:
        raise PayloadError(f"unsupported payload version {obj.get('v')!r} (expected {VERSION})")
    return obj


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise PayloadError(f"{where}: missing {key!r}")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise PayloadError(f"{where}: {key!r} has the wrong type")
    if isinstance(value, float) and not math.isfinite(value):
        raise PayloadError(f"{where}: {key!r} is not finite")
    if isinstance(value, str) and not value and key in ("site", "module", "tag", "kind"):
        raise PayloadError(f"{where}: {key!r} is empty")
    return value


def _timestamp(obj: dict[str, Any], key: str, where: str) -> int:
    value = _field(obj, key, int, where)
    if not 0 <= value < 2**63:
        raise PayloadError(f"{where}: {key!r} is out of range")
    return int(value)


@decoder
def decode_batch(data: bytes) -> TelemetryBatch:
    """Parse and validate a telemetry batch."""
    obj = _load(data)
    site = _field(obj, "site", str, "batch")
    module = _field(obj, "module", str, "batch")
    raw = _field(obj, "samples", list, "batch")
    if not raw:
        raise PayloadError("batch: no samples")
    samples = []
    for i, item in enumerate(raw):
        where = f"sample {i}"
        if not isinstance(item, dict):
            raise PayloadError(f"{where}: not an object")
        tag = _field(item, "tag", str, where)
        if tag.partition(".")[0] != module:
            raise PayloadError(f"{where}: tag {tag!r} is not of module {module!r}")
        value = item.get("value")
        if not (value is None or isinstance(value, bool | int | float | str)) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise PayloadError(f"{where}: 'value' must be a finite number, boolean, string or null")
        quality = _field(item, "quality", str, where)
        if quality not in QUALITIES:
            raise PayloadError(f"{where}: quality {quality!r} is not one of {QUALITIES}")
        samples.append(
            Sample(
                tag=tag,
                value=value,
                quality=quality,
                source_ns=_timestamp(item, "source_ns", where),
                server_ns=_timestamp(item, "server_ns", where),
                seq=_timestamp(item, "seq", where),
            )
        )
    return TelemetryBatch(site, module, _timestamp(obj, "sent_ns", "batch"), tuple(samples))


_HASH = re.compile(r"[0-9a-f]{64}")


@decoder
def decode_event(data: bytes) -> Event:
    """Parse and validate an event."""
    obj = _load(data)
    where = "event"
    values: dict[str, Any] = {
        "site": _field(obj, "site", str, where),
        "kind": _field(obj, "kind", str, where),
        "seq": _timestamp(obj, "seq", where),
        "time_ns": _timestamp(obj, "time_ns", where),
        "source": _field(obj, "source", str, where),
    }
    for key in ("user", "action", "target", "reason", "result", "log"):
        values[key] = _field(obj, key, str, where) if key in obj else ""
    for key in ("prev_hash", "hash"):
        text = _field(obj, key, str, where) if key in obj else ""
        if text and not _HASH.fullmatch(text):
            raise PayloadError(f"{where}: {key!r} must be a SHA-256 in lower-case hex")
        values[key] = text
    for key in ("old", "new"):
        value = obj.get(key)
        if not (value is None or isinstance(value, bool | int | float | str)):
            raise PayloadError(f"{where}: {key!r} must be a scalar")
        values[key] = value
    values["accepted"] = _field(obj, "accepted", bool, where) if "accepted" in obj else True
    if "priority" in obj:
        priority = _field(obj, "priority", int, where)
        if not 0 <= priority <= 1000:
            raise PayloadError(f"{where}: 'priority' must be 0..1000 (an OPC UA severity)")
        values["priority"] = priority
    for key in ("level", "state"):
        values[key] = _field(obj, key, str, where) if key in obj else ""
    if "elapsed_s" in obj:
        elapsed = _field(obj, "elapsed_s", (int, float), where)
        if elapsed < 0:
            raise PayloadError(f"{where}: 'elapsed_s' must not be negative")
        values["elapsed_s"] = float(elapsed)
    if values["state"] and values["state"] not in ALARM_STATES:
        raise PayloadError(f"{where}: 'state' must be one of {', '.join(ALARM_STATES)}")
    return Event(**values)


# Commands --------------------------------------------------------------------------------------
# A request is published on pcmm/v1/<site>/command/<kind>/<user> (the broker's ACL attests the
# user) with MQTT 5 properties ResponseTopic and CorrelationData; the edge answers a Reply on
# that response topic with the same correlation data.

COMMAND_KINDS = ("setpoint", "line", "fault", "quarantine", "alarm")
LINE_ACTIONS = ("start", "stop", "abort", "reset")
FAULT_ACTIONS = ("inject", "clear", "list")
#: The operator's alarm actions (Part 9 methods), and the controller's raise/clear of its own
#: diagnoses (`Alarms/Report`): alarm commands.
ALARM_ACTIONS = (
    "acknowledge",
    "confirm",
    "comment",
    "shelve",
    "unshelve",
    "remove_from_service",
    "place_in_service",
    "raise",
    "clear",
)


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """What a client asks the plant to do. Only the fields of its kind are used:

    setpoint: tag, value; line: action; fault: action (inject | clear | list) with kind, target,
    magnitude, duration_s for inject and fault_id for clear; quarantine: start_ns, end_ns, the
    press-time window (UTC, as the telemetry's source times) whose accepted tablets are held
    back in genealogy. `reason` is always welcome.
    """

    kind: str
    tag: str = ""
    value: Scalar = None
    action: str = ""
    fault: str = ""
    target: str = ""
    magnitude: float | None = None
    duration_s: float = 0.0
    fault_id: int = 0
    start_ns: int = 0
    end_ns: int = 0
    reason: str = ""
    alarm: str = ""  # alarm: the alarm id (raise/clear: the controller's diagnosis name)


@dataclass(frozen=True, slots=True)
class CommandReply:
    """The plant's answer: accepted or not, a machine-readable code and a one-line reason."""

    accepted: bool
    code: str  # accepted, or range | state | type | unknown_tag | not_writable | denied | ...
    reason: str
    time_ns: int
    detail: Any = None  # e.g. the fault id of an injected fault, or the list of active faults


def encode_command(request: CommandRequest) -> bytes:
    body = {k: v for k, v in asdict(request).items() if v not in ("", None, 0, 0.0) or k == "value"}
    body["kind"] = request.kind
    return _json({"v": VERSION, **body})


@decoder
def decode_command(data: bytes, kind: str) -> CommandRequest:
    """Parse and validate a command of the kind its topic names."""
    obj = _load(data)
    where = f"{kind} command"
    if kind not in COMMAND_KINDS:
        raise PayloadError(f"unknown command kind {kind!r}")
    reason = _field(obj, "reason", str, where) if "reason" in obj else ""
    if kind == "setpoint":
        tag = _field(obj, "tag", str, where)
        value = obj.get("value")
        if (
            value is None
            or not isinstance(value, bool | int | float | str)
            or (isinstance(value, float) and not math.isfinite(value))
        ):
            raise PayloadError(f"{where}: 'value' must be a finite number, boolean or state name")
        return CommandRequest(kind, tag=tag, value=value, reason=reason)
    if kind == "quarantine":
        start, end = _timestamp(obj, "start_ns", where), _timestamp(obj, "end_ns", where)
        if end <= start:
            raise PayloadError(f"{where}: 'end_ns' must be after 'start_ns'")
        return CommandRequest(kind, start_ns=start, end_ns=end, reason=reason)
    action = _field(obj, "action", str, where)
    if kind == "alarm":
        if action not in ALARM_ACTIONS:
            raise PayloadError(f"{where}: action must be one of {', '.join(ALARM_ACTIONS)}")
        duration = obj.get("duration_s", 0.0)
        if (
            isinstance(duration, bool)
            or not isinstance(duration, int | float)
            or not math.isfinite(duration)
            or duration < 0
        ):
            raise PayloadError(f"{where}: 'duration_s' must be 0 or more seconds")
        alarm = _field(obj, "alarm", str, where)
        if not alarm:
            raise PayloadError(f"{where}: 'alarm' is empty")
        return CommandRequest(
            kind, action=action, alarm=alarm, duration_s=float(duration), reason=reason
        )
    if kind == "line":
        if action not in LINE_ACTIONS:
            raise PayloadError(f"{where}: action must be one of {', '.join(LINE_ACTIONS)}")
        return CommandRequest(kind, action=action, reason=reason)
    if action not in FAULT_ACTIONS:
        raise PayloadError(f"{where}: action must be one of {', '.join(FAULT_ACTIONS)}")
    if action == "inject":
        magnitude = obj.get("magnitude")
        if magnitude is not None and (
            isinstance(magnitude, bool)
            or not isinstance(magnitude, int | float)
            or not math.isfinite(magnitude)
        ):
            raise PayloadError(f"{where}: 'magnitude' must be a finite number")
        duration = obj.get("duration_s", 0.0)
        if isinstance(duration, bool) or not isinstance(duration, int | float) or duration < 0:
            raise PayloadError(f"{where}: 'duration_s' must be 0 or more seconds")
        target = _field(obj, "target", str, where) if "target" in obj else ""
        return CommandRequest(
            kind,
            action=action,
            fault=_field(obj, "fault", str, where),
            target=target,
            magnitude=None if magnitude is None else float(magnitude),
            duration_s=float(duration),
            reason=reason,
        )
    if action == "clear":
        fault_id = _field(obj, "fault_id", int, where)
        return CommandRequest(kind, action=action, fault_id=fault_id, reason=reason)
    return CommandRequest(kind, action=action, reason=reason)


def window_text(start_ns: int, end_ns: int) -> str:
    """A quarantine's window as people and audit records read it: ISO 8601 UTC, start/end."""

    def iso(ns: int) -> str:
        return from_ns(ns).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    return f"{iso(start_ns)}/{iso(end_ns)}"


def encode_reply(reply: CommandReply) -> bytes:
    return _json({"v": VERSION, **asdict(reply)})


@decoder
def decode_reply(data: bytes) -> CommandReply:
    obj = _load(data)
    return CommandReply(
        accepted=_field(obj, "accepted", bool, "reply"),
        code=_field(obj, "code", str, "reply"),
        reason=_field(obj, "reason", str, "reply"),
        time_ns=_timestamp(obj, "time_ns", "reply"),
        detail=obj.get("detail"),
    )
