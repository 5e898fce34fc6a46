"""Alarms as OPC UA events, emitted by the Server object.

- Limit alarms on the key quality tags (NIR API concentration, tablet weight, hardness) are
  `ExclusiveLimitAlarmType` condition events: one when the value leaves its limits (Active,
  Retain) and one when it returns (Inactive, not retained). asyncua keeps retained conditions
  and replays them on ConditionRefresh, so a client that subscribes late still sees what is
  active. asyncua has no Acknowledge/Confirm behind these conditions, so they are sent as
  already acknowledged and confirmed; an operator cannot acknowledge them over OPC UA.
- Faults raised and cleared are `PlantFaultEventType` events (a BaseEventType subtype with
  FaultId, FaultKind, FaultTarget, Magnitude and FaultState fields).

Limits come from the layout's press parameters: API at content_low..content_high % of label
claim (as % w/w of the tablet), weight at target +- tolerance, hardness inside its spec.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from asyncua import Server, ua

from core.tags import Quality
from opcua_server.address_space import PlantNodes
from opcua_server.clock import PlantClock
from twin import Plant
from twin.faults import ActiveFault
from twin.store import TagValue

log = logging.getLogger(__name__)

FAULT_EVENT_TYPE = "PlantFaultEventType"
SEVERITY_ACTIVE = 700
SEVERITY_NORMAL = 200
SEVERITY_FAULT = 800


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """A limit alarm on one tag."""

    tag_id: str
    low: float
    high: float


def quality_limits(plant: Plant) -> list[LimitSpec]:
    """The limit alarms of the key quality tags: every tag with spec limits in the registry."""
    return [
        LimitSpec(tag.id, tag.limits[0], tag.limits[1])
        for tag in plant.registry.plant_tags()
        if tag.limits is not None
    ]


class _LimitAlarm:
    def __init__(self, spec: LimitSpec, generator: Any) -> None:
        self.spec = spec
        self.generator = generator
        self.state = "normal"  # normal, low, high
        self.last_time = float("-inf")


class Alarms:
    """Watches the quality tags and the fault list; fires events on every transition.

    Args:
        server: the asyncua server.
        nodes: the tag nodes (events name a tag's node as their source).
        clock: maps plant time to event times.
        limits: the limit alarms to watch.
    """

    def __init__(
        self, server: Server, nodes: PlantNodes, clock: PlantClock, limits: Sequence[LimitSpec]
    ) -> None:
        self.server = server
        self.nodes = nodes
        self.clock = clock
        self.limits = [spec for spec in limits if spec.tag_id in nodes.tags]
        self._alarms: list[_LimitAlarm] = []
        self._fault_events: Any = None
        self._fault_status: dict[int, str] = {}
        self.fired = 0

    async def init(self) -> None:
        """Create the event type and one generator per alarm."""
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
        for spec in self.limits:
            generator = await self.server.get_event_generator(
                ua.ObjectIds.ExclusiveLimitAlarmType, ua.ObjectIds.Server
            )
            node = self.nodes.tags[spec.tag_id]
            event = generator.event
            event.SourceNode = node.nodeid
            event.SourceName = spec.tag_id
            event.NodeId = ua.NodeId(f"{node.nodeid.Identifier}.LimitAlarm", ns)
            event.ConditionName = f"{spec.tag_id} limits"
            event.InputNode = node.nodeid
            event.LowLimit = spec.low
            event.HighLimit = spec.high
            for field, value in (
                ("EnabledState/Id", True),
                ("AckedState/Id", True),
                ("ConfirmedState/Id", True),
            ):
                setattr(event, field, value)
            event.EnabledState = ua.LocalizedText("Enabled")
            event.AckedState = ua.LocalizedText("Acknowledged")
            event.ConfirmedState = ua.LocalizedText("Confirmed")
            self._set_active(event, False)
            self._alarms.append(_LimitAlarm(spec, generator))

    async def check(self, values: Mapping[str, TagValue]) -> None:
        """Fire a limit event for every quality tag that crossed a limit since the last check."""
        for alarm in self._alarms:
            sample = values.get(alarm.spec.tag_id)
            if (
                sample is None
                or sample.quality is not Quality.GOOD
                or sample.source_time <= alarm.last_time
            ):
                continue
            alarm.last_time = sample.source_time
            value = float(sample.value)
            spec = alarm.spec
            state = "low" if value < spec.low else "high" if value > spec.high else "normal"
            if state == alarm.state:
                continue
            alarm.state = state
            unit = self.nodes.tags[spec.tag_id].tag.unit.symbol
            if state == "normal":
                message = f"{spec.tag_id} back within {spec.low:g}..{spec.high:g} {unit}"
            else:
                limit = spec.low if state == "low" else spec.high
                message = f"{spec.tag_id} {state}: {value:.4g} {unit} (limit {limit:g} {unit})"
            event = alarm.generator.event
            self._set_active(event, state != "normal")
            event.Quality = ua.StatusCode(ua.StatusCodes.Good)
            await alarm.generator.trigger(self.clock.utc(sample.source_time), message)
            self.fired += 1
            log.info("alarm: %s", message)

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

    @staticmethod
    def _set_active(event: Any, active: bool) -> None:
        setattr(event, "ActiveState/Id", active)  # the field name has a slash
        event.ActiveState = ua.LocalizedText("Active" if active else "Inactive")
        event.Retain = active
        event.Severity = SEVERITY_ACTIVE if active else SEVERITY_NORMAL
