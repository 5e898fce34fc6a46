"""Fault events, emitted by the Server object.

Faults raised and cleared are `PlantFaultEventType` events (a BaseEventType subtype with
FaultId, FaultKind, FaultTarget, Magnitude and FaultState fields, and FaultSeq and FaultLog,
which number them). OPC UA events are not historized, so a client that was not subscribed
when one fired (an edge reconnecting) reads it back with `Objects/<site>/FaultsSince`, the
paged reader of the audit trail (`methods.add_audit_since`) over the newest MAX_FAULT_EVENTS.
These are the simulation's ground truth (which fault really happened when): the scoring
reads them, the controller never does. Alarms are conditions with a lifecycle (acknowledge,
confirm, shelve): `opcua_server.conditions`.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

from asyncua import Server, ua

from opcua_server.address_space import PlantNodes
from opcua_server.audit_events import json_page
from opcua_server.clock import PlantClock
from twin.faults import ActiveFault

log = logging.getLogger(__name__)

FAULT_EVENT_TYPE = "PlantFaultEventType"
FAULTS_SINCE = "FaultsSince"
MAX_FAULT_EVENTS = 10_000  # kept for FaultsSince: a campaign has tens
#: The fields of a fault event's record (`FaultsSince`), as the live event names them.
RECORD_FIELDS = (
    "FaultSeq",
    "FaultLog",
    "FaultId",
    "FaultKind",
    "FaultTarget",
    "Magnitude",
    "FaultState",
    "Severity",
)
SEVERITY_NORMAL = 200
SEVERITY_FAULT = 800


class Alarms:
    """Watches the fault list; fires an event when a fault is raised or cleared.

    Args:
        server: the asyncua server.
        nodes: the site's nodes (the events name the site as their source).
        clock: maps plant time to event times.
    """

    def __init__(self, server: Server, nodes: PlantNodes, clock: PlantClock) -> None:
        self.server = server
        self.nodes = nodes
        self.clock = clock
        self._fault_events: Any = None
        self._fault_status: dict[int, str] = {}
        self.fired = 0
        self.last_seq = 0
        #: Names this server's sequence of fault events (a restarted server counts from 1).
        self.log_id = uuid.uuid4().hex
        self.records: deque[tuple[int, dict[str, Any]]] = deque(maxlen=MAX_FAULT_EVENTS)

    async def init(self) -> None:
        """Create the event type and its generator."""
        ns = self.nodes.namespace
        fault_type = await self.server.create_custom_event_type(
            ns,
            FAULT_EVENT_TYPE,
            ua.ObjectIds.BaseEventType,
            [
                ("FaultId", ua.VariantType.UInt32),
                ("FaultKind", ua.VariantType.String),
                ("FaultTarget", ua.VariantType.String),
                ("Magnitude", ua.VariantType.Double),
                ("FaultState", ua.VariantType.String),
                ("FaultSeq", ua.VariantType.UInt64),
                ("FaultLog", ua.VariantType.String),
            ],
        )
        self._fault_events = await self.server.get_event_generator(fault_type, ua.ObjectIds.Server)
        self._fault_events.event.SourceNode = self.nodes.site
        self._fault_events.event.SourceName = self.nodes.site.Identifier

    async def check_faults(self, faults: Sequence[ActiveFault], now: float) -> None:
        """Fire an event for every fault that became active or ended since the last check."""
        for fault in faults:
            before = self._fault_status.get(fault.id, "pending")
            if fault.status == before:
                continue
            self._fault_status[fault.id] = fault.status
            if fault.status == "active" or (fault.status == "ended" and before == "active"):
                raised = fault.status == "active"
                event = self._fault_events.event
                event.FaultId = fault.id
                event.FaultKind = fault.kind
                event.FaultTarget = fault.target
                event.Magnitude = fault.magnitude
                event.FaultState = "raised" if raised else "cleared"
                event.Severity = SEVERITY_FAULT if raised else SEVERITY_NORMAL
                when = fault.onset_s if raised else (fault.ended_s or now)
                message = (
                    f"fault {fault.id} {fault.kind} on {fault.target} "
                    f"{'raised' if raised else 'cleared'}"
                )
                self.last_seq += 1
                event.FaultSeq = self.last_seq
                event.FaultLog = self.log_id
                time = self.clock.utc(when)
                await self._fault_events.trigger(time, message)
                record = {name: getattr(event, name) for name in RECORD_FIELDS}
                record.update(Message=message, Time=time.isoformat())
                self.records.append((self.last_seq, record))
                self.fired += 1
                log.info("event: %s", message)

    def since(self, after_seq: int, max_records: int) -> tuple[list[str], int]:
        """Fault events after `after_seq` as JSON records (paged as `AuditEvents.since`), and
        the last seq; the oldest are no longer kept past MAX_FAULT_EVENTS."""
        return json_page(self.records, after_seq, max_records), self.last_seq
