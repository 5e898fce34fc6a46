"""Fault events, emitted by the Server object.

Faults raised and cleared are `PlantFaultEventType` events (a BaseEventType subtype with
FaultId, FaultKind, FaultTarget, Magnitude and FaultState fields). Alarms are conditions with
a lifecycle (acknowledge, confirm, shelve): `opcua_server.conditions`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from asyncua import Server, ua

from opcua_server.address_space import PlantNodes
from opcua_server.clock import PlantClock
from twin.faults import ActiveFault

log = logging.getLogger(__name__)

FAULT_EVENT_TYPE = "PlantFaultEventType"
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
                await self._fault_events.trigger(self.clock.utc(when), message)
                self.fired += 1
                log.info("event: %s", message)
