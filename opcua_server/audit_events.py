"""The twin's audit trail as OPC UA events, emitted by the Server object.

Every record the twin appends to its audit log (setpoint writes, line commands, faults,
accepted or refused, by whom and why) becomes one `PlantAuditEventType` event, so that a client
subscribed to the Server object's events (the MQTT edge) can forward the trail without polling.
The event carries the record's own sequence number (`AuditSeq`), so a consumer can tell a gap
or a repeat. Old and new values are JSON text: a record's value may be a number, a state name,
a boolean or null, and an event field has one data type.

Records are emitted after each clock tick, so an event follows its record by at most one
publish period.

Events are not historized: a client that was not subscribed when a record was emitted (before
it first connected, or while it was reconnecting) reads what it missed with the site's
`AuditSince` method (`opcua_server.methods.add_audit_since`), which returns the same records
with the same field names and the same Time, so a record read both ways is the same record.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from asyncua import Server, ua

from core.timebase import to_ns
from opcua_server.address_space import PlantNodes
from opcua_server.clock import PlantClock
from twin import Plant
from twin.audit import AuditRecord

log = logging.getLogger(__name__)

AUDIT_EVENT_TYPE = "PlantAuditEventType"
SEVERITY_ACCEPTED = 100
SEVERITY_REFUSED = 300
AUDIT_PAGE_MAX = 500  # records per AuditSince answer at most
# ... and about this many bytes of JSON (at least one record): a page of records with long
# text (twin.audit cuts each field at about 1,000 characters) stays well below 1 MB too.
AUDIT_PAGE_BYTES = 256 * 1024


def json_page(
    records: Iterable[tuple[int, dict[str, Any]]], after_seq: int, max_records: int
) -> list[str]:
    """One page of a `...Since` answer: the records numbered above `after_seq`, as JSON, at
    most `max_records` (capped at AUDIT_PAGE_MAX) and about AUDIT_PAGE_BYTES (at least one);
    the reader asks again after the last record it got."""
    limit = min(max_records or AUDIT_PAGE_MAX, AUDIT_PAGE_MAX)
    out: list[str] = []
    size = 0
    for seq, fields in records:
        if seq <= after_seq:
            continue
        text = json.dumps(fields, separators=(",", ":"), allow_nan=False)
        size += len(text)
        if len(out) >= limit or (out and size > AUDIT_PAGE_BYTES):
            break
        out.append(text)
    return out


#: Field name and type of every property of the event type, in order.
AUDIT_FIELDS = (
    ("AuditSeq", ua.VariantType.UInt32),
    ("User", ua.VariantType.String),
    ("Action", ua.VariantType.String),
    ("Target", ua.VariantType.String),
    ("OldValue", ua.VariantType.String),
    ("NewValue", ua.VariantType.String),
    ("Reason", ua.VariantType.String),
    ("Accepted", ua.VariantType.Boolean),
    ("Result", ua.VariantType.String),
    ("AuditLog", ua.VariantType.String),
    ("PrevHash", ua.VariantType.String),
    ("Hash", ua.VariantType.String),
)


def _json(value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):  # a NaN or an odd object: keep it readable, never fail
        return json.dumps(str(value))


def record_fields(record: AuditRecord, time: datetime, log_id: str = "") -> dict[str, Any]:
    """A record as the fields of its event (`time` is the record's plant time as UTC, the
    time its hash covers: `AuditEvents` sets the log's stamp from the same clock)."""
    return {
        "AuditSeq": record.seq,
        "User": record.user,
        "Action": record.action,
        "Target": record.target,
        "OldValue": _json(record.old),
        "NewValue": _json(record.new),
        "Reason": record.reason,
        "Accepted": record.accepted,
        "Result": record.result,
        "AuditLog": log_id,
        "PrevHash": record.prev_hash,
        "Hash": record.hash,
        "Severity": SEVERITY_ACCEPTED if record.accepted else SEVERITY_REFUSED,
        "Message": f"{record.user} {record.action} {record.target}: {record.result}",
        "Time": time,
    }


class AuditEvents:
    """Emits one event per new audit record of the twin.

    Args:
        server: the asyncua server.
        nodes: the site's nodes (the events name the site as their source).
        clock: maps a record's plant time to the event's Time.
        plant: the twin whose audit log is watched.
    """

    def __init__(self, server: Server, nodes: PlantNodes, clock: PlantClock, plant: Plant) -> None:
        self.server = server
        self.nodes = nodes
        self.clock = clock
        self.plant = plant
        self.emitted = 0  # the highest record sequence number emitted
        #: Names this audit log: a restarted server has a new twin whose records start at 1
        #: again, and a client that remembers where it was in the old log must know that.
        self.log_id = uuid.uuid4().hex
        # A record's hash covers its time as published: the same clock, to the microsecond.
        plant.audit.bind_stamp(lambda plant_s: to_ns(clock.utc(plant_s)))
        self._generator: Any = None

    async def init(self) -> None:
        """Create the event type and its generator; records made before now are emitted too."""
        event_type = await self.server.create_custom_event_type(
            self.nodes.namespace, AUDIT_EVENT_TYPE, ua.ObjectIds.BaseEventType, list(AUDIT_FIELDS)
        )
        self._generator = await self.server.get_event_generator(event_type, ua.ObjectIds.Server)
        self._generator.event.SourceNode = self.nodes.site
        self._generator.event.SourceName = self.nodes.site.Identifier

    async def emit_new(self) -> int:
        """Emit the records appended since the last call; returns how many."""
        records = self.plant.audit.since(self.emitted)
        if not records:
            return 0
        event = self._generator.event
        for record in records:
            fields = record_fields(record, self.clock.utc(record.time), self.log_id)
            time, message = fields.pop("Time"), fields.pop("Message")
            for name, value in fields.items():
                setattr(event, name, value)
            await self._generator.trigger(time, message)
            self.emitted = record.seq
        return len(records)

    def since(self, after_seq: int, max_records: int) -> tuple[list[str], int]:
        """Records after `after_seq` (at most `max_records`, capped at AUDIT_PAGE_MAX) as JSON
        objects with the event's field names and Time as ISO 8601 UTC; and the log's last seq.

        Includes records not emitted as events yet: a reader dedupes by AuditSeq. The twin
        keeps only its newest records (`twin.audit.MAX_RECORDS`): when the first record of
        the answer is above `after_seq + 1`, the ones between are no longer kept.
        """
        page = self.plant.audit.since(after_seq, min(max_records or AUDIT_PAGE_MAX, AUDIT_PAGE_MAX))
        return json_page(
            ((record.seq, self._record(record)) for record in page), after_seq, max_records
        ), self.plant.audit.last_seq

    def _record(self, record: AuditRecord) -> dict[str, Any]:
        fields = record_fields(record, self.clock.utc(record.time), self.log_id)
        fields["Time"] = fields["Time"].isoformat()
        return fields
