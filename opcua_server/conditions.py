"""OPC UA Part 9 alarms and conditions: one condition per alarm of `core.alarms`, with methods.

asyncua sends condition events and replays retained ones on ConditionRefresh, but has nothing
behind Acknowledge, Confirm, AddComment, shelving or out of service: this module is that part.

    Objects/<site>/Alarms                          folder of the conditions, and Report()
    Objects/<site>/Alarms/<alarm id>               a condition (NodeId `<site>.Alarms.<id>`)
    Objects/<site>/Alarms/<alarm id>/ShelvingState its shelving state machine (for shelving)

- Types: a limit alarm is a `PlantLevelAlarmType` (subtype of ExclusiveLevelAlarmType), a
  discrete one a `PlantDiscreteAlarmType` (subtype of OffNormalAlarmType). Both add three
  plain fields a client can select without browsing optional children: `Transition` (what
  this event reports: raise, level, clear, acknowledge, confirm, comment, shelve, unshelve,
  out_of_service, in_service), `Level` (HighHigh, High, Low, LowLow, Active or empty) and
  `Shelving` (Unshelved, OneShotShelved, TimedShelved). The standard fields are all set too:
  ActiveState, AckedState, ConfirmedState (with /Id), Retain, Severity (the ISA-18.2
  priority), LimitState/CurrentState, ShelvingState/CurrentState, SuppressedOrShelved,
  OutOfServiceState, Comment, ClientUserId (who made the change), Quality, the limits.
- Condition nodes are the object and its ShelvingState only; their state is in the events
  (Part 9 allows a server not to expose a condition's variables). The methods are the types'
  own method nodes (AcknowledgeableConditionType.Acknowledge, ...), called with the condition
  (or its ShelvingState) as the ObjectId, as Part 9 5.7.3 asks every server to allow; a
  client that looks a method up on the instance finds it on the type (node-opcua does).
- Methods: Acknowledge, Confirm, AddComment (EventId, Comment); OneShotShelve, TimedShelve
  (ShelvingTime, ms), Unshelve and their `...2` forms with a Comment; RemoveFromService,
  PlaceInService (and `...2` with a Comment). Every one takes an optional trailing
  `OnBehalfOf`, honoured for a gateway only (as `Objects/<site>/Commands`). The EventId must
  be one this condition sent since it was last raised or got worse (else BadEventIdUnknown:
  the operator has not seen what it is now).
- Roles: an operator (or a gateway) may call them; a viewer or anonymous session may only
  subscribe and refresh: BadUserAccessDenied. Every call, carried out or refused, is in the
  twin's audit trail with its user and comment, and every change is a condition event.
- Time: shelving times are plant time (ms of plant time), as every time of the twin.
- `Report(Name, Active, Message, OnBehalfOf)` on the folder raises or clears a controller
  diagnosis (`controller.<name>`): the controller's own alarms go through the same lifecycle.
- OfType in an event filter is true for subtypes too (Part 4 7.7.3; asyncua compares the exact
  type): `install()` makes it so, so that a client filtering on AlarmConditionType sees these.
"""

from __future__ import annotations

import copy
import logging
import math
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from asyncua import Server, ua
from asyncua.server.event_generator import EventGenerator
from asyncua.server.monitored_item_service import WhereClauseEvaluator

from core.alarms import (
    AlarmBoard,
    AlarmDef,
    AlarmState,
    Kind,
    LifecycleError,
    Transition,
)
from core.text import MAX_NAME_CHARS, MAX_REASON_CHARS, clip, shown
from opcua_server.address_space import PlantNodes, object_item
from opcua_server.audit_events import json_page
from opcua_server.clock import PlantClock
from opcua_server.methods import add_audit_since
from opcua_server.sessions import current_user
from twin import Plant
from twin.faults import ActiveFault
from twin.store import TagValue

log = logging.getLogger(__name__)

ALARMS = "Alarms"
REPORT = "Report"
LEVEL_TYPE = "PlantLevelAlarmType"
DISCRETE_TYPE = "PlantDiscreteAlarmType"
EXTRA_FIELDS = (
    ("Transition", ua.VariantType.String),
    ("Level", ua.VariantType.String),
    ("Shelving", ua.VariantType.String),
    ("State", ua.VariantType.String),
    ("AlarmSeq", ua.VariantType.UInt32),
    ("AlarmLog", ua.VariantType.String),
    ("Elapsed", ua.VariantType.Double),
)
EPISODE_EVENTS = 64  # event ids of a condition's current episode kept for acknowledging
TRANSITIONS_SINCE = "TransitionsSince"
MAX_TRANSITIONS = 10_000  # kept for TransitionsSince (hours of them, as the audit trail)
#: The fields of a transition's record (`TransitionsSince`), as the live event names them.
RECORD_FIELDS = (
    "AlarmSeq",
    "AlarmLog",
    "ConditionName",
    "SourceName",
    "Transition",
    "Level",
    "State",
    "Shelving",
    "Severity",
    "ClientUserId",
    "Comment",
    "Message",
    "ActiveState/Id",
    "AckedState/Id",
    "ConfirmedState/Id",
    "OutOfServiceState/Id",
    "Elapsed",
)

_SHELVING_STATE_IDS = {
    "Unshelved": ua.ObjectIds.ShelvedStateMachineType_Unshelved,
    "OneShotShelved": ua.ObjectIds.ShelvedStateMachineType_OneShotShelved,
    "TimedShelved": ua.ObjectIds.ShelvedStateMachineType_TimedShelved,
}
_LIMIT_STATE_IDS = {
    "HighHigh": ua.ObjectIds.ExclusiveLimitStateMachineType_HighHigh,
    "High": ua.ObjectIds.ExclusiveLimitStateMachineType_High,
    "Low": ua.ObjectIds.ExclusiveLimitStateMachineType_Low,
    "LowLow": ua.ObjectIds.ExclusiveLimitStateMachineType_LowLow,
}


def _ids(*names: str) -> list[int]:
    return [i for i in (getattr(ua.ObjectIds, n, None) for n in names) if isinstance(i, int)]


#: Method name -> (the standard method nodes it is called as, its arguments before OnBehalfOf).
METHODS: dict[str, tuple[list[int], tuple[str, ...]]] = {
    "Acknowledge": (_ids("AcknowledgeableConditionType_Acknowledge"), ("EventId", "Comment")),
    "Confirm": (_ids("AcknowledgeableConditionType_Confirm"), ("EventId", "Comment")),
    "AddComment": (_ids("ConditionType_AddComment"), ("EventId", "Comment")),
    "OneShotShelve": (
        _ids(
            "ShelvedStateMachineType_OneShotShelve",
            "AlarmConditionType_ShelvingState_OneShotShelve",
        ),
        (),
    ),
    "OneShotShelve2": (
        _ids(
            "ShelvedStateMachineType_OneShotShelve2",
            "AlarmConditionType_ShelvingState_OneShotShelve2",
        ),
        ("Comment",),
    ),
    "TimedShelve": (
        _ids("ShelvedStateMachineType_TimedShelve", "AlarmConditionType_ShelvingState_TimedShelve"),
        ("ShelvingTime",),
    ),
    "TimedShelve2": (
        _ids(
            "ShelvedStateMachineType_TimedShelve2", "AlarmConditionType_ShelvingState_TimedShelve2"
        ),
        ("ShelvingTime", "Comment"),
    ),
    "Unshelve": (
        _ids("ShelvedStateMachineType_Unshelve", "AlarmConditionType_ShelvingState_Unshelve"),
        (),
    ),
    "Unshelve2": (
        _ids("ShelvedStateMachineType_Unshelve2", "AlarmConditionType_ShelvingState_Unshelve2"),
        ("Comment",),
    ),
    "RemoveFromService": (_ids("AlarmConditionType_RemoveFromService"), ()),
    "RemoveFromService2": (_ids("AlarmConditionType_RemoveFromService2"), ("Comment",)),
    "PlaceInService": (_ids("AlarmConditionType_PlaceInService"), ()),
    "PlaceInService2": (_ids("AlarmConditionType_PlaceInService2"), ("Comment",)),
}


class _Refused(Exception):  # noqa: N818 - an answer, not an error of ours
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Condition:
    """One condition: its alarm's lifecycle, its node and its own event object."""

    def __init__(self, state: AlarmState, nodeid: ua.NodeId, generator: EventGenerator) -> None:
        self.state = state
        self.nodeid = nodeid
        self.generator = generator
        self.episode: list[bytes] = []  # event ids sent since the alarm was last raised/worse

    @property
    def alarm(self) -> AlarmDef:
        return self.state.alarm


class AlarmConditions:
    """Every alarm of the pod as a Part 9 condition (see the module docstring).

    Args:
        server: the asyncua server.
        nodes: the site's nodes (tag nodes are the limit alarms' sources).
        clock: maps plant time to event times.
        plant: the twin (its faults, its audit trail).
        alarms: the alarm definitions (`core.alarms.build_alarms`).
    """

    def __init__(
        self,
        server: Server,
        nodes: PlantNodes,
        clock: PlantClock,
        plant: Plant,
        alarms: Sequence[AlarmDef],
    ) -> None:
        self.server = server
        self.nodes = nodes
        self.clock = clock
        self.plant = plant
        self.alarms = [a for a in alarms if a.kind is Kind.DISCRETE or a.source in nodes.tags]
        self.board = AlarmBoard(self.alarms)
        self.states = self.board.states
        self._conditions: dict[str, _Condition] = {}
        self._by_node: dict[ua.NodeId, _Condition] = {}
        #: The newest transitions, in order: (seq, transition, its record for TransitionsSince).
        self.transitions: deque[tuple[int, Transition, dict[str, Any]]] = deque(
            maxlen=MAX_TRANSITIONS
        )
        self.last_seq = 0
        #: Names this server's sequence of transitions (a restarted server counts from 1 again).
        self.log_id = uuid.uuid4().hex
        self.fired = 0
        self.folder: ua.NodeId | None = None

    def condition_id(self, alarm_id: str) -> ua.NodeId:
        return self.nodes.node_id(f"{self.nodes.site.Identifier}.{ALARMS}.{alarm_id}")

    # Building ----------------------------------------------------------------------------
    async def init(self) -> None:
        """Create the types, the folder, one condition per alarm, and bind the methods."""
        install()
        server, ns, site = self.server, self.nodes.namespace, self.nodes.site.Identifier
        extra = list(EXTRA_FIELDS)
        level_type = await server.create_custom_event_type(
            ns, LEVEL_TYPE, ua.ObjectIds.ExclusiveLevelAlarmType, extra
        )
        discrete_type = await server.create_custom_event_type(
            ns, DISCRETE_TYPE, ua.ObjectIds.OffNormalAlarmType, extra
        )
        templates = {}
        for kind, etype in ((Kind.LIMIT, level_type), (Kind.DISCRETE, discrete_type)):
            generator = await server.get_event_generator(etype, ua.ObjectIds.Server)
            event = generator.event
            event.add_property("ShelvingState/CurrentState", None, ua.VariantType.LocalizedText)
            event.add_property("ShelvingState/CurrentState/Id", None, ua.VariantType.NodeId)
            event.add_property("ShelvingState/UnshelveTime", None, ua.VariantType.Double)
            if kind is Kind.LIMIT:
                event.add_property("LimitState/CurrentState", None, ua.VariantType.LocalizedText)
                event.add_property("LimitState/CurrentState/Id", None, ua.VariantType.NodeId)
            _fix_derived_types(event)
            templates[kind] = event
        folder_node = await server.get_node(self.nodes.site).add_folder(
            ua.NodeId(f"{site}.{ALARMS}", ns), ua.QualifiedName(ALARMS, ns)
        )
        self.folder = folder_node.nodeid
        await folder_node.set_event_notifier([ua.EventNotifier.SubscribeToEvents])
        items: list[ua.AddNodesItem] = []
        for alarm in self.alarms:
            nodeid = self.condition_id(alarm.id)
            etype = level_type if alarm.kind is Kind.LIMIT else discrete_type
            items.append(object_item(nodeid, alarm.id, ns, self.folder, etype.nodeid))
            shelving = ua.NodeId(f"{nodeid.Identifier}.ShelvingState", ns)
            items.append(
                object_item(
                    shelving,
                    "ShelvingState",
                    0,
                    nodeid,
                    ua.NodeId(ua.ObjectIds.ShelvedStateMachineType),
                    ua.ObjectIds.HasComponent,
                )
            )
        isession = server.iserver.isession
        for result in await isession.add_nodes(items):
            result.StatusCode.check()
        references = []
        for alarm in self.alarms:
            nodeid = self.condition_id(alarm.id)
            source = self._source_node(alarm)
            references.append(_reference(source, nodeid, ua.ObjectIds.HasCondition))
            event = copy.deepcopy(templates[alarm.kind])
            generator = EventGenerator(isession)
            await generator.init(event, ua.ObjectIds.Server, add_generates_event=False)
            self._fill_static(event, alarm, nodeid, source)
            condition = _Condition(self.states[alarm.id], nodeid, generator)
            self._conditions[alarm.id] = condition
            self._by_node[nodeid] = condition
            self._by_node[ua.NodeId(f"{nodeid.Identifier}.ShelvingState", ns)] = condition
        for result in await isession.add_references(references):
            result.check()
        for name, (method_ids, _) in METHODS.items():
            for method_id in method_ids:
                node = ua.NodeId(method_id)
                if node in server.iserver.aspace:
                    isession.add_method_callback(node, self._method(name))
        await self._add_report(folder_node)
        await add_audit_since(
            server,
            self.nodes,
            site,
            lambda after, most: (*self.since(after, most), self.log_id),
            name=TRANSITIONS_SINCE,
            parent=self.folder,
            records="One JSON object per alarm transition, in order, with the condition event's "
            "field names (AlarmSeq, AlarmLog, ConditionName, Transition, Level, State, Shelving, "
            "Severity, ClientUserId, Comment, Message, ...) and Time (ISO 8601 UTC)",
        )

    def _source_node(self, alarm: AlarmDef) -> ua.NodeId:
        if alarm.kind is Kind.LIMIT:
            return self.nodes.tags[alarm.source].nodeid
        if alarm.source in self.nodes.tags:
            return self.nodes.tags[alarm.source].nodeid
        return self.nodes.site

    def _fill_static(
        self, event: Any, alarm: AlarmDef, nodeid: ua.NodeId, source: ua.NodeId
    ) -> None:
        event.NodeId = nodeid
        event.SourceNode = source
        event.SourceName = alarm.source
        event.ConditionName = alarm.id
        event.ConditionClassId = ua.NodeId(ua.ObjectIds.ProcessConditionClassType)
        event.ConditionClassName = ua.LocalizedText("Process")
        event.BranchId = ua.NodeId()
        event.InputNode = source if alarm.kind is Kind.LIMIT else ua.NodeId()
        event.Quality = ua.StatusCode(ua.StatusCodes.Good)
        event.OnDelay = alarm.on_delay_s * 1000.0
        event.OffDelay = alarm.off_delay_s * 1000.0
        setattr(event, "EnabledState/Id", True)
        event.EnabledState = ua.LocalizedText("Enabled")
        if alarm.kind is Kind.LIMIT:
            for level, field in (
                ("HighHigh", "HighHighLimit"),
                ("High", "HighLimit"),
                ("Low", "LowLimit"),
                ("LowLow", "LowLowLimit"),
            ):
                if level in alarm.limits:
                    setattr(event, field, float(alarm.limits[level]))
            event.HighDeadband = event.LowDeadband = alarm.deadband
        self._fill_state(event, self.states[alarm.id].snapshot(), "", "", "")
        event.Message = ua.LocalizedText(f"{alarm.id}: {alarm.description}")

    @staticmethod
    def _fill_state(event: Any, snap: Any, action: str, user: str, comment: str) -> None:
        setattr(event, "ActiveState/Id", snap.active)
        event.ActiveState = ua.LocalizedText("Active" if snap.active else "Inactive")
        setattr(event, "AckedState/Id", snap.acked)
        event.AckedState = ua.LocalizedText("Acknowledged" if snap.acked else "Unacknowledged")
        setattr(event, "ConfirmedState/Id", snap.confirmed)
        event.ConfirmedState = ua.LocalizedText("Confirmed" if snap.confirmed else "Unconfirmed")
        setattr(event, "OutOfServiceState/Id", snap.out_of_service)
        event.OutOfServiceState = ua.LocalizedText(
            "Out of service" if snap.out_of_service else "In service"
        )
        shelving = str(snap.shelving)
        setattr(event, "ShelvingState/CurrentState", ua.LocalizedText(shelving))
        setattr(event, "ShelvingState/CurrentState/Id", ua.NodeId(_SHELVING_STATE_IDS[shelving]))
        setattr(event, "ShelvingState/UnshelveTime", 0.0)
        event.SuppressedOrShelved = snap.suppressed_or_shelved
        event.Retain = snap.retain or snap.suppressed_or_shelved
        event.LastSeverity = event.Severity or int(snap.priority)
        event.Severity = int(snap.priority)
        level = snap.level or ""
        if hasattr(event, "LimitState/CurrentState"):
            setattr(event, "LimitState/CurrentState", ua.LocalizedText(level))
            setattr(
                event,
                "LimitState/CurrentState/Id",
                ua.NodeId(_LIMIT_STATE_IDS[level]) if level in _LIMIT_STATE_IDS else ua.NodeId(),
            )
        event.Transition = action
        event.Level = level
        event.Shelving = shelving
        event.ClientUserId = user
        event.Comment = ua.LocalizedText(comment)

    async def _add_report(self, folder: Any) -> None:
        ns = self.nodes.namespace
        arguments = [
            _argument("Name", ua.ObjectIds.String, "The diagnosis, e.g. nir_bias"),
            _argument("Active", ua.ObjectIds.Boolean, "Raised (true) or cleared (false)"),
            _argument("Message", ua.ObjectIds.String, "What the controller saw"),
            _argument("OnBehalfOf", ua.ObjectIds.String, "The user a gateway acts for"),
        ]
        await folder.add_method(
            ua.NodeId(f"{self.nodes.site.Identifier}.{ALARMS}.{REPORT}", ns),
            ua.QualifiedName(REPORT, ns),
            self._report,
            arguments,
            [],
        )

    # The process side ----------------------------------------------------------------------
    async def check(
        self, values: Mapping[str, TagValue], faults: Sequence[ActiveFault], now: float
    ) -> int:
        """Evaluate every twin alarm against the newest samples and faults; send an event for
        every transition. Returns how many were sent."""
        active: dict[str, str] = {}
        for fault in faults:
            if fault.status == "active" and fault.kind not in active:
                active[fault.kind] = (
                    f"fault {fault.kind} on {fault.target} (magnitude {fault.magnitude:g})"
                )
        made = self.board.evaluate(values, active, now)
        for transition in made:
            await self._send(transition)
        return len(made)

    async def _send(self, transition: Transition) -> None:
        condition = self._conditions[transition.alarm]
        event = condition.generator.event
        self._fill_state(
            event, transition.state, transition.action, transition.user, transition.comment
        )
        time = self.clock.utc(transition.time)
        setattr(event, "Comment/SourceTimestamp", time)
        if transition.state.unshelve_at < math.inf:
            remaining = max(transition.state.unshelve_at - self.plant.now, 0.0)
            setattr(event, "ShelvingState/UnshelveTime", remaining * 1000.0)
        if transition.action in ("raise", "level"):
            condition.episode = []
        self.last_seq += 1
        event.AlarmSeq = self.last_seq
        event.AlarmLog = self.log_id
        event.State = transition.state.isa_state
        # Plant seconds since the raise this transition answers: an acknowledgement's time to
        # acknowledge (what the alarm-management dashboard averages); 0 for others.
        raised = transition.state.raised_at
        elapsed = transition.time - raised if transition.action == "acknowledge" else 0.0
        event.Elapsed = elapsed if math.isfinite(elapsed) else 0.0
        message = _message(transition)
        await condition.generator.trigger(time, message)
        condition.episode.append(_event_id(event.EventId))
        del condition.episode[:-EPISODE_EVENTS]
        record = {name: _plain(getattr(event, name, None)) for name in RECORD_FIELDS}
        record["Time"] = time.isoformat()
        self.transitions.append((self.last_seq, transition, record))
        self.fired += 1
        log.info("alarm: %s", message)

    # The operator side ---------------------------------------------------------------------
    def _method(self, name: str) -> Callable[..., Any]:
        _, params = METHODS[name]

        async def handler(parent: ua.NodeId, *args: ua.Variant) -> ua.CallMethodResult:
            condition = self._by_node.get(parent)
            target = condition.alarm.id if condition else str(parent.Identifier)
            try:
                if condition is None:
                    raise _Refused(
                        ua.StatusCodes.BadNodeIdInvalid, f"{shown(target)} is not a condition"
                    )
                values = _arguments(name, params, args)
                await self._carry_out(condition, name, values)
            except _Refused as refusal:
                log.info("%s on %s refused: %s", name, clip(target, 80), refusal.message)
                return ua.CallMethodResult(StatusCode=ua.StatusCode(refusal.status))
            except Exception:  # a bug of ours must not take the server down
                log.exception("%s failed", name)
                return ua.CallMethodResult(
                    StatusCode=ua.StatusCode(ua.StatusCodes.BadInternalError)
                )
            return ua.CallMethodResult()

        return handler

    async def _carry_out(self, condition: _Condition, name: str, values: dict[str, Any]) -> None:
        comment = values.get("Comment", "")
        action = _ACTIONS[name]
        alarm_id = condition.alarm.id
        user = self._caller(f"alarm_{action}", alarm_id, comment, values.get("OnBehalfOf", ""))
        now = self.plant.now
        state = condition.state
        try:
            if "EventId" in values and values["EventId"] not in condition.episode:
                raise LifecycleError(
                    "BadEventIdUnknown",
                    f"{alarm_id} has changed since that event: refresh and look again",
                )
            if action == "acknowledge":
                transition = state.acknowledge(now, user, comment)
            elif action == "confirm":
                transition = state.confirm(now, user, comment)
            elif action == "comment":
                transition = state.comment(now, user, comment)
            elif action == "shelve":
                shelving_ms = values.get("ShelvingTime")
                duration = None if shelving_ms is None else shelving_ms / 1000.0
                transition = state.shelve(now, user, comment, duration)
            elif action == "unshelve":
                transition = state.unshelve(now, user, comment)
            elif action == "out_of_service":
                transition = state.remove_from_service(now, user, comment)
            else:
                transition = state.place_in_service(now, user, comment)
        except LifecycleError as error:
            self.plant.audit.record(
                now,
                user,
                f"alarm_{action}",
                alarm_id,
                reason=comment,
                accepted=False,
                result=error.message,
            )
            raise _Refused(getattr(ua.StatusCodes, error.code), error.message) from None
        self.plant.audit.record(
            now,
            user,
            f"alarm_{action}",
            alarm_id,
            old=None,
            new=transition.state.isa_state,
            reason=comment,
            accepted=True,
            result=transition.state.isa_state,
        )
        await self._send(transition)

    async def _report(self, parent: ua.NodeId, *args: ua.Variant) -> ua.CallMethodResult:
        try:
            if len(args) < 3:
                raise _Refused(ua.StatusCodes.BadArgumentsMissing, "Name, Active, Message")
            name, active, message = (a.Value for a in args[:3])
            on_behalf = args[3].Value if len(args) > 3 else ""
            if not isinstance(name, str) or not isinstance(active, bool):
                raise _Refused(ua.StatusCodes.BadTypeMismatch, "Name String, Active Boolean")
            message = message if isinstance(message, str) else ""
            on_behalf = on_behalf if isinstance(on_behalf, str) else ""
            alarm_id = f"controller.{name}"
            user = self._caller("alarm_report", alarm_id, message, on_behalf)
            condition = self._conditions.get(alarm_id)
            if condition is None:
                raise _Refused(
                    ua.StatusCodes.BadInvalidArgument, f"no alarm {shown(clip(alarm_id, 80))}"
                )
            for transition in self.board.report(name, active, clip(message), self.plant.now):
                await self._send(
                    Transition(
                        transition.alarm,
                        transition.time,
                        transition.action,
                        user,
                        transition.comment,
                        transition.state,
                    )
                )
        except _Refused as refusal:
            return ua.CallMethodResult(StatusCode=ua.StatusCode(refusal.status))
        return ua.CallMethodResult()

    def _caller(self, action: str, target: str, comment: str, on_behalf_of: str) -> str:
        """The name to record for a call; refused (and audited) unless the caller may make it."""
        user = current_user.get()
        role = f"{user.label} ({user.plant_role})"
        status = ua.StatusCodes.BadUserAccessDenied
        if not user.may_operate:
            why = f"{role} may only read alarms; acknowledging and shelving is for operators"
        elif on_behalf_of and not user.may_act_for_others:
            why = f"{role} may not act on behalf of {shown(on_behalf_of)}: only a gateway may"
        elif len(on_behalf_of) > MAX_NAME_CHARS:
            status = ua.StatusCodes.BadInvalidArgument
            why = f"OnBehalfOf is {len(on_behalf_of):,} characters long; at most {MAX_NAME_CHARS}"
        elif len(comment) > MAX_REASON_CHARS:
            status = ua.StatusCodes.BadInvalidArgument
            why = f"Comment is {len(comment):,} characters long; at most {MAX_REASON_CHARS}"
        else:
            return f"{on_behalf_of} via {user.label}" if on_behalf_of else user.label
        self.plant.audit.record(
            self.plant.now, user.label, action, target, reason=comment, accepted=False, result=why
        )
        raise _Refused(status, why)

    # Reading -------------------------------------------------------------------------------
    def since(self, after_seq: int, max_records: int) -> tuple[list[str], int]:
        """Transitions after `after_seq` as JSON records (paged as `AuditEvents.since`) and
        the last seq; the oldest are no longer kept past MAX_TRANSITIONS."""
        records = ((seq, record) for seq, _, record in self.transitions)
        return json_page(records, after_seq, max_records), self.last_seq

    def state(self, alarm_id: str) -> AlarmState:
        return self._conditions[alarm_id].state

    def latest_event_id(self, alarm_id: str) -> bytes | None:
        episode = self._conditions[alarm_id].episode
        return episode[-1] if episode else None


_ACTIONS = {
    "Acknowledge": "acknowledge",
    "Confirm": "confirm",
    "AddComment": "comment",
    "OneShotShelve": "shelve",
    "OneShotShelve2": "shelve",
    "TimedShelve": "shelve",
    "TimedShelve2": "shelve",
    "Unshelve": "unshelve",
    "Unshelve2": "unshelve",
    "RemoveFromService": "out_of_service",
    "RemoveFromService2": "out_of_service",
    "PlaceInService": "in_service",
    "PlaceInService2": "in_service",
}


def _message(t: Transition) -> str:
    s = t.state
    if t.action in ("raise", "level", "clear"):
        return s.message
    who = f" by {t.user}" if t.user else ""
    why = f": {t.comment}" if t.comment else ""
    return f"{t.alarm} {t.action}{who}{why}"


#: Derived data types asyncua leaves as NodeIds in an event's field types (a field of such a
#: type cannot be sent once it has a value): their built-in types.
_DERIVED = {
    ua.ObjectIds.UtcTime: ua.VariantType.DateTime,
    ua.ObjectIds.Duration: ua.VariantType.Double,
    ua.ObjectIds.AudioDataType: ua.VariantType.ByteString,
}


def _fix_derived_types(event: Any) -> None:
    for name, vtype in list(event.data_types.items()):
        if isinstance(vtype, ua.NodeId):
            event.data_types[name] = _DERIVED.get(vtype.Identifier, ua.VariantType.Variant)


def _plain(value: Any) -> Any:
    """An event field as JSON: LocalizedText as its text."""
    if isinstance(value, ua.LocalizedText):
        return value.Text or ""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _event_id(value: Any) -> bytes:
    raw = value.Value if isinstance(value, ua.Variant) else value
    return bytes(raw or b"")


def _arguments(name: str, params: tuple[str, ...], args: Sequence[ua.Variant]) -> dict[str, Any]:
    """The call's arguments by name (an optional OnBehalfOf after them), checked."""
    if len(args) < len(params):
        raise _Refused(
            ua.StatusCodes.BadArgumentsMissing, f"{name} takes {', '.join(params) or 'nothing'}"
        )
    if len(args) > len(params) + 1:
        raise _Refused(ua.StatusCodes.BadTooManyArguments, f"{name}: too many arguments")
    values: dict[str, Any] = {}
    for param, arg in zip((*params, "OnBehalfOf"), args, strict=False):
        value = arg.Value
        if param == "EventId":
            if not isinstance(value, bytes | bytearray):
                raise _Refused(ua.StatusCodes.BadTypeMismatch, "EventId must be a ByteString")
            values[param] = bytes(value)
        elif param == "Comment":
            text = value.Text if isinstance(value, ua.LocalizedText) else value
            if text is not None and not isinstance(text, str):
                raise _Refused(ua.StatusCodes.BadTypeMismatch, "Comment must be LocalizedText")
            values[param] = text or ""
        elif param == "ShelvingTime":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _Refused(ua.StatusCodes.BadTypeMismatch, "ShelvingTime must be a Duration")
            values[param] = float(value)
        else:
            if value is not None and not isinstance(value, str):
                raise _Refused(ua.StatusCodes.BadTypeMismatch, "OnBehalfOf must be a String")
            values[param] = value or ""
    return values


def _reference(source: ua.NodeId, target: ua.NodeId, kind: int) -> ua.AddReferencesItem:
    ref = ua.AddReferencesItem()
    ref.SourceNodeId = source
    ref.TargetNodeId = target
    ref.ReferenceTypeId = ua.NodeId(kind)
    ref.IsForward = True
    ref.TargetNodeClass = ua.NodeClass.Object
    return ref


def _argument(name: str, datatype: int, description: str) -> ua.Argument:
    argument = ua.Argument()
    argument.Name = name
    argument.DataType = ua.NodeId(datatype)
    argument.ValueRank = ua.ValueRank.Scalar
    argument.ArrayDimensions = []
    argument.Description = ua.LocalizedText(description)
    return argument


# OfType with subtypes ------------------------------------------------------------------------
_original_eval_el = WhereClauseEvaluator._eval_el


def _eval_el_with_subtypes(self: WhereClauseEvaluator, index: int, event: Any) -> Any:
    element = self.elements[index]
    if element.FilterOperator != ua.FilterOperator.OfType:
        return _original_eval_el(self, index, event)
    wanted = self._eval_op(element.FilterOperands[0], event)
    key = (id(self._aspace), event.EventType, wanted)
    found = _OF_TYPE.get(key)
    if found is None:  # walked once per pair: every event of every filter asks again
        found = False
        etype, seen = event.EventType, set()
        while etype is not None and etype not in seen:
            if etype == wanted:
                found = True
                break
            seen.add(etype)
            etype = _supertype(self._aspace, etype)
        _OF_TYPE[key] = found
    return found


#: (address space, event type, wanted type) -> whether the one is the other or a subtype of
#: it. Event types are made when a server starts and never change while it runs.
_OF_TYPE: dict[tuple[int, ua.NodeId, Any], bool] = {}


def _supertype(aspace: Any, nodeid: ua.NodeId) -> ua.NodeId | None:
    node = aspace.get(nodeid)
    if node is None:
        return None
    for ref in node.references:
        if ref.ReferenceTypeId == ua.NodeId(ua.ObjectIds.HasSubtype) and not ref.IsForward:
            return ref.NodeId
    return None


def install() -> None:
    """Make OfType match subtypes (see the module docstring); idempotent."""
    _OF_TYPE.clear()  # a new server's types are walked again
    WhereClauseEvaluator._eval_el = _eval_el_with_subtypes
