"""MQTT payloads, version 1: telemetry batches, events, commands and command results.

JSON, UTF-8, compact. Times are integer nanoseconds since the Unix epoch (UTC), the precision
InfluxDB stores. The JSON Schemas in `schemas/` document the same shapes for other consumers;
`tests/unit/test_payload.py` checks that the two agree.

Decoding never trusts its input: anything malformed raises `PayloadError` with the reason, so a
consumer can dead-letter it instead of crashing.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

VERSION = 1
QUALITIES = ("good", "uncertain", "bad")
Scalar = float | int | bool | str | None


class PayloadError(ValueError):
    """A payload that does not follow the schema; the message says where."""


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


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def encode_batch(batch: TelemetryBatch) -> bytes:
    return _json(
        {
            "v": VERSION,
            "site": batch.site,
            "module": batch.module,
            "sent_ns": batch.sent_ns,
            "samples": [asdict(s) for s in batch.samples],
        }
    )


def encode_event(event: Event) -> bytes:
    return _json({"v": VERSION, **asdict(event)})


def _load(data: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PayloadError(f"not JSON: {error}") from None
    except RecursionError:
        raise PayloadError("not JSON: nested too deeply") from None
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
                tag,
                value,
                quality,
                _timestamp(item, "source_ns", where),
                _timestamp(item, "server_ns", where),
                _timestamp(item, "seq", where),
            )
        )
    return TelemetryBatch(site, module, _timestamp(obj, "sent_ns", "batch"), tuple(samples))


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
    for key in ("user", "action", "target", "reason", "result"):
        values[key] = _field(obj, key, str, where) if key in obj else ""
    for key in ("old", "new"):
        value = obj.get(key)
        if not (value is None or isinstance(value, bool | int | float | str)):
            raise PayloadError(f"{where}: {key!r} must be a scalar")
        values[key] = value
    values["accepted"] = _field(obj, "accepted", bool, where) if "accepted" in obj else True
    return Event(**values)


# Commands --------------------------------------------------------------------------------------
# A request is published on pcmm/v1/<site>/command/<kind>/<user> (the broker's ACL attests the
# user) with MQTT 5 properties ResponseTopic and CorrelationData; the edge answers a Reply on
# that response topic with the same correlation data.

COMMAND_KINDS = ("setpoint", "line", "fault", "quarantine")
LINE_ACTIONS = ("start", "stop", "abort", "reset")
FAULT_ACTIONS = ("inject", "clear", "list")


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
        when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
        return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    return f"{iso(start_ns)}/{iso(end_ns)}"


def encode_reply(reply: CommandReply) -> bytes:
    return _json({"v": VERSION, **asdict(reply)})


def decode_reply(data: bytes) -> CommandReply:
    obj = _load(data)
    return CommandReply(
        accepted=_field(obj, "accepted", bool, "reply"),
        code=_field(obj, "code", str, "reply"),
        reason=_field(obj, "reason", str, "reply"),
        time_ns=_timestamp(obj, "time_ns", "reply"),
        detail=obj.get("detail"),
    )
