"""Alarms as OPC UA Part 9 conditions, against real asyncua clients over loopback.

The server is the project's, started by the `opcua` fixture on a free port. The clients
subscribe to the Server object's condition events, acknowledge, confirm, comment and shelve
through the standard methods, and a late client asks for ConditionRefresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from asyncua import Client, ua

from opcua_server.conditions import ALARMS, DISCRETE_TYPE, LEVEL_TYPE

from .conftest import RunningServer, client
from .test_opcua_server import SITE, call, d, s, until

pytestmark = pytest.mark.integration

ACK = ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge)
CONFIRM = ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Confirm)
COMMENT = ua.NodeId(ua.ObjectIds.ConditionType_AddComment)
TIMED_SHELVE = ua.NodeId(ua.ObjectIds.ShelvedStateMachineType_TimedShelve)
ONE_SHOT_SHELVE2 = ua.NodeId(ua.ObjectIds.ShelvedStateMachineType_OneShotShelve2)
UNSHELVE = ua.NodeId(ua.ObjectIds.ShelvedStateMachineType_Unshelve)
REMOVE = ua.NodeId(ua.ObjectIds.AlarmConditionType_RemoveFromService2)
PLACE = ua.NodeId(ua.ObjectIds.AlarmConditionType_PlaceInService2)
REFRESH = ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh)


class Events:
    """Collects the condition events a subscription delivers."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def event_notification(self, event: Any) -> None:
        self.items.append(event)

    def of(self, alarm_id: str, transition: str | None = None) -> list[Any]:
        return [
            e
            for e in self.items
            if getattr(e, "ConditionName", None) == alarm_id
            and (transition is None or getattr(e, "Transition", None) == transition)
        ]

    def has(self, alarm_id: str, transition: str) -> Callable[[], bool]:
        return lambda: bool(self.of(alarm_id, transition))


async def subscribe(c: Client, running: RunningServer) -> tuple[Events, Any]:
    ns = running.server.nodes.namespace
    types = [
        c.get_node(ua.NodeId(t, ns))
        for t in (
            await _type_id(c, ns, LEVEL_TYPE),
            await _type_id(c, ns, DISCRETE_TYPE),
        )
    ]
    events = Events()
    subscription = await c.create_subscription(20, events)
    await subscription.subscribe_events(c.nodes.server, types)
    return events, subscription


async def _type_id(c: Client, ns: int, name: str) -> Any:
    for node in await _subtypes(c.get_node(ua.NodeId(ua.ObjectIds.AlarmConditionType))):
        if (await node.read_browse_name()).Name == name:
            return node.nodeid.Identifier
    raise AssertionError(f"no event type {name}")


async def _subtypes(node: Any) -> list[Any]:
    found = []
    for child in await node.get_children(refs=ua.ObjectIds.HasSubtype):
        found.append(child)
        found += await _subtypes(child)
    return found


def condition(running: RunningServer, alarm_id: str) -> ua.NodeId:
    return ua.NodeId(f"{SITE}.{ALARMS}.{alarm_id}", running.server.nodes.namespace)


def shelving(running: RunningServer, alarm_id: str) -> ua.NodeId:
    return ua.NodeId(f"{SITE}.{ALARMS}.{alarm_id}.ShelvingState", running.server.nodes.namespace)


async def method(
    c: Client, obj: ua.NodeId, method_id: ua.NodeId, *args: ua.Variant
) -> ua.StatusCode:
    request = ua.CallMethodRequest()
    request.ObjectId = obj
    request.MethodId = method_id
    request.InputArguments = list(args)
    result = (await c.uaclient.call([request]))[0]
    return result.StatusCode


def event_id(event: Any) -> ua.Variant:
    return ua.Variant(event.EventId, ua.VariantType.ByteString)


def text(comment: str) -> ua.Variant:
    return ua.Variant(ua.LocalizedText(comment), ua.VariantType.LocalizedText)


def test_an_operator_acknowledges_confirms_and_comments_and_a_viewer_may_not(
    opcua: RunningServer,
) -> None:
    running = opcua
    alarm = "equipment.bridging"
    cond = condition(running, alarm)

    async def scenario() -> None:
        async with client(running.url, "alice") as alice, client(running.url, "victor") as victor:
            events, _ = await subscribe(alice, running)
            injected = await call(alice, running, "InjectFault", s("bridging"), s(""), d(0.8))
            assert injected.StatusCode.is_good()
            await until(events.has(alarm, "raise"), what="the raise event")
            raised = events.of(alarm, "raise")[-1]
            assert getattr(raised, "ActiveState/Id") is True
            assert getattr(raised, "AckedState/Id") is False
            assert raised.Retain is True and raised.Severity == 700
            assert raised.NodeId == cond

            denied = await method(victor, cond, ACK, event_id(raised), text("I saw it"))
            assert denied.value == ua.StatusCodes.BadUserAccessDenied

            assert (await method(alice, cond, ACK, event_id(raised), text("on it"))).is_good()
            await until(events.has(alarm, "acknowledge"), what="the acknowledge event")
            acked = events.of(alarm, "acknowledge")[-1]
            assert getattr(acked, "AckedState/Id") is True
            assert acked.ClientUserId == "alice" and acked.Comment.Text == "on it"
            again = await method(alice, cond, ACK, event_id(acked), text("twice"))
            assert again.value == ua.StatusCodes.BadConditionBranchAlreadyAcked
            stale = await method(alice, cond, COMMENT, ua.Variant(b"not-an-event"), text("x"))
            assert stale.value == ua.StatusCodes.BadEventIdUnknown

            noted = await method(alice, cond, COMMENT, event_id(acked), text("feeder 1 hopper"))
            assert noted.is_good()
            await until(events.has(alarm, "comment"), what="the comment event")

            fault_id = int(injected.OutputArguments[0].Value)
            assert (
                await call(
                    alice, running, "ClearFault", ua.Variant(fault_id, ua.VariantType.UInt32)
                )
            ).StatusCode.is_good()
            await until(events.has(alarm, "clear"), what="the clear event")
            cleared = events.of(alarm, "clear")[-1]
            assert cleared.Retain is True  # acknowledged, not yet confirmed
            confirmed = await method(alice, cond, CONFIRM, event_id(cleared), text("checked"))
            assert confirmed.is_good()
            await until(events.has(alarm, "confirm"), what="the confirm event")
            assert events.of(alarm, "confirm")[-1].Retain is False

    asyncio.run(scenario())
    actions = [
        (r.user, r.action, r.target, r.reason, r.accepted)
        for r in running.audit()
        if r.action.startswith("alarm_")
    ]
    assert ("victor", "alarm_acknowledge", alarm, "I saw it", False) in actions
    assert ("alice", "alarm_acknowledge", alarm, "on it", True) in actions
    assert ("alice", "alarm_comment", alarm, "feeder 1 hopper", True) in actions
    assert ("alice", "alarm_confirm", alarm, "checked", True) in actions


def test_shelving_and_out_of_service_are_events_with_their_user_and_comment(
    opcua: RunningServer,
) -> None:
    running = opcua
    alarm = "environment.humidity"

    async def scenario() -> None:
        async with client(running.url, "alice") as alice, client(running.url, "victor") as victor:
            events, _ = await subscribe(alice, running)
            shelf = shelving(running, alarm)
            denied = await method(
                victor, shelf, TIMED_SHELVE, ua.Variant(60_000.0, ua.VariantType.Double)
            )
            assert denied.value == ua.StatusCodes.BadUserAccessDenied
            timed = await method(
                alice, shelf, TIMED_SHELVE, ua.Variant(4 * 3600_000.0, ua.VariantType.Double)
            )
            assert timed.is_good()
            await until(events.has(alarm, "shelve"), what="the shelve event")
            shelved = events.of(alarm, "shelve")[-1]
            assert shelved.Shelving == "TimedShelved" and shelved.SuppressedOrShelved is True
            assert shelved.ClientUserId == "alice"
            again = await method(
                alice, shelf, TIMED_SHELVE, ua.Variant(60_000.0, ua.VariantType.Double)
            )
            assert again.value == ua.StatusCodes.BadConditionAlreadyShelved
            assert (await method(alice, shelf, UNSHELVE)).is_good()
            await until(events.has(alarm, "unshelve"), what="the unshelve event")
            assert (
                await method(alice, shelf, UNSHELVE)
            ).value == ua.StatusCodes.BadConditionNotShelved
            one_shot = await method(alice, shelf, ONE_SHOT_SHELVE2, text("sensor swap"))
            assert one_shot.is_good()
            await until(lambda: len(events.of(alarm, "shelve")) == 2, what="the one-shot shelve")
            assert events.of(alarm, "shelve")[-1].Comment.Text == "sensor swap"

            cond = condition(running, alarm)
            assert (await method(alice, cond, REMOVE, text("calibrating"))).is_good()
            await until(events.has(alarm, "out_of_service"), what="out of service")
            out = events.of(alarm, "out_of_service")[-1]
            assert (
                getattr(out, "OutOfServiceState/Id") is True and out.Comment.Text == "calibrating"
            )
            assert (await method(alice, cond, PLACE, text("done"))).is_good()
            await until(events.has(alarm, "in_service"), what="in service")

    asyncio.run(scenario())


def test_a_late_client_gets_the_active_alarms_by_condition_refresh_and_can_acknowledge(
    opcua: RunningServer,
) -> None:
    running = opcua
    alarm = "equipment.punch_wear"

    async def scenario() -> None:
        async with client(running.url, "alice") as alice:
            early, _ = await subscribe(alice, running)
            injected = await call(alice, running, "InjectFault", s("punch_wear"), s(""), d(0.1))
            assert injected.StatusCode.is_good()
            await until(early.has(alarm, "raise"), what="the raise event")
        async with client(running.url, "alice") as late:
            events, subscription = await subscribe(late, running)
            refreshed = await method(
                late,
                ua.NodeId(ua.ObjectIds.ConditionType),
                REFRESH,
                ua.Variant(subscription.subscription_id, ua.VariantType.UInt32),
            )
            assert refreshed.is_good()
            await until(lambda: bool(events.of(alarm)), what="the refreshed condition")
            current = events.of(alarm)[-1]
            assert getattr(current, "ActiveState/Id") is True
            assert getattr(current, "AckedState/Id") is False
            acked = await method(
                late, condition(running, alarm), ACK, event_id(current), text("late")
            )
            assert acked.is_good()

    asyncio.run(scenario())


def test_the_controllers_diagnosis_is_a_condition_only_an_operator_or_gateway_may_report(
    opcua: RunningServer,
) -> None:
    running = opcua
    ns = running.server.nodes.namespace
    folder = ua.NodeId(f"{SITE}.{ALARMS}", ns)
    report = ua.NodeId(f"{SITE}.{ALARMS}.Report", ns)

    def args(name: str, active: bool) -> list[ua.Variant]:
        return [
            ua.Variant(name, ua.VariantType.String),
            ua.Variant(active, ua.VariantType.Boolean),
            ua.Variant("NIR reads 0.4 % w/w high", ua.VariantType.String),
        ]

    async def scenario() -> None:
        async with client(running.url, "gina") as gina, client(running.url, "victor") as victor:
            events, _ = await subscribe(gina, running)
            denied = await method(victor, folder, report, *args("nir_bias", True))
            assert denied.value == ua.StatusCodes.BadUserAccessDenied
            unknown = await method(gina, folder, report, *args("no_such_diagnosis", True))
            assert unknown.value == ua.StatusCodes.BadInvalidArgument
            on_behalf = ua.Variant("controller", ua.VariantType.String)
            raised = await method(gina, folder, report, *args("nir_bias", True), on_behalf)
            assert raised.is_good()
            await until(events.has("controller.nir_bias", "raise"), what="the diagnosis")
            event = events.of("controller.nir_bias", "raise")[-1]
            assert event.ClientUserId == "controller via gina" and event.Severity == 700

    asyncio.run(scenario())
