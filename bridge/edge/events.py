"""OPC UA events of the twin's server -> core.payload.Event on pcmm/v1/<site>/events/<kind>.

- `PlantAuditEventType` (one per twin audit record) -> an `audit` event with the record's own
  sequence number, user (e.g. "alice via edge"), action, target, old, new, reason and outcome.
- `PlantFaultEventType` -> a `fault` event (raised or cleared).
- The server's alarm conditions (`PlantLevelAlarmType`, `PlantDiscreteAlarmType`: every
  transition of an alarm's lifecycle) -> an `alarm` event: action the transition (raise,
  level, clear, acknowledge, confirm, comment, shelve, unshelve, out_of_service, in_service),
  target the alarm, user who made it, reason the comment, result the message, and the
  alarm's priority, level and ISA-18.2 state after it; its seq is the server's `AlarmSeq`.
  (An older server's `ExclusiveLimitAlarmType` event -> an `alarm` event active or normal.)

Audit events keep the twin's sequence number, its audit log and hash chain
(`core.audit_chain`); alarm transitions the server's AlarmSeq; faults the server's FaultSeq
(an older server's carry none: the edge numbers them from its persistent event counter).
"""

from __future__ import annotations

import json
import math
from typing import Any

from core.payload import ALARM_STATES, Event, Scalar
from core.timebase import to_ns


def _text(value: Any) -> str:
    if value is None:
        return ""
    return str(getattr(value, "Text", value) or "")


def _elapsed(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if math.isfinite(value) and value > 0 else 0.0


def _json_scalar(text: Any) -> Scalar:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return str(text)
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def to_event(site: str, kind: str, fields: dict[str, Any], seq: int) -> Event:
    """One OPC UA event as a plant Event (`seq` is used unless the event carries its own)."""
    time_ns = to_ns(fields.get("Time"))
    message = _text(fields.get("Message"))
    if kind == "audit":
        return Event(
            site=site,
            kind="audit",
            seq=int(fields.get("AuditSeq") or seq),
            time_ns=time_ns,
            source="twin",
            user=_text(fields.get("User")),
            action=_text(fields.get("Action")),
            target=_text(fields.get("Target")),
            old=_json_scalar(fields.get("OldValue")),
            new=_json_scalar(fields.get("NewValue")),
            reason=_text(fields.get("Reason")),
            accepted=bool(fields.get("Accepted")),
            result=_text(fields.get("Result")),
            log=_text(fields.get("AuditLog")),
            prev_hash=_text(fields.get("PrevHash")),
            hash=_text(fields.get("Hash")),
        )
    if kind == "fault":
        magnitude = fields.get("Magnitude")
        return Event(
            site=site,
            kind="fault",
            seq=int(fields.get("FaultSeq") or seq),
            time_ns=time_ns,
            source="twin",
            action=f"fault_{_text(fields.get('FaultState'))}",
            target=f"{_text(fields.get('FaultKind'))}@{_text(fields.get('FaultTarget'))}",
            new=float(magnitude) if isinstance(magnitude, int | float) else None,
            result=message,
        )
    if fields.get("AlarmSeq"):
        severity = fields.get("Severity")
        state = _text(fields.get("State"))
        return Event(
            site,
            "alarm",
            int(fields["AlarmSeq"]),
            time_ns,
            "twin",
            user=_text(fields.get("ClientUserId")),
            action=_text(fields.get("Transition")),
            target=_text(fields.get("ConditionName")),
            reason=_text(fields.get("Comment")),
            result=message,
            priority=int(severity) if isinstance(severity, int) and 0 < severity <= 1000 else 0,
            level=_text(fields.get("Level")),
            state=state if state in ALARM_STATES else "",
            elapsed_s=_elapsed(fields.get("Elapsed")),
        )
    active = bool(fields.get("ActiveState/Id"))
    return Event(
        site=site,
        kind="alarm",
        seq=seq,
        time_ns=time_ns,
        source="twin",
        action="active" if active else "normal",
        target=_text(fields.get("SourceName")),
        result=message,
    )
