"""The OPC UA server's gateway surface: Abort, WriteSetpoint on behalf of a user, audit events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asyncua import ua

from opcua_server.audit_events import AUDIT_EVENT_TYPE

from .conftest import RunningServer, client
from .test_opcua_server import call, d, message, s

pytestmark = pytest.mark.integration


def test_abort_stops_the_line_at_once_and_is_audited(opcua: RunningServer) -> None:
    async def scenario() -> None:
        async with client(opcua.url, "alice") as c:
            result = await call(c, opcua, "Abort", s("e-stop test"))
            assert result.StatusCode.is_good(), message(result)
            assert result.OutputArguments[0].Value == opcua.plant.state
            denied = await call(c, opcua, "Start", s("again"))
            assert not denied.StatusCode.is_good()  # an aborted line needs a reset first
        async with client(opcua.url, "victor") as c:
            refused = await call(c, opcua, "Abort", s("viewer tries"))
            assert refused.StatusCode.value == ua.StatusCodes.BadUserAccessDenied

    asyncio.run(scenario())
    records = [(r.user, r.action, r.accepted) for r in opcua.audit()]
    assert ("alice", "abort", True) in records
    assert ("victor", "abort", False) in records


def test_write_setpoint_on_behalf_of_names_both_users(opcua: RunningServer) -> None:
    async def scenario() -> None:
        async with client(opcua.url, "alice") as c:
            ok = await call(
                c, opcua, "WriteSetpoint", s("press.fill_depth_sp"), d(9.5), s("trim"), s("bob")
            )
            assert ok.StatusCode.is_good(), message(ok)
            assert json.loads(ok.OutputArguments[1].Value) == 9.5
            bad = await call(
                c, opcua, "WriteSetpoint", s("press.fill_depth_sp"), d(99.0), s("x"), s("bob")
            )
            assert bad.StatusCode.value == ua.StatusCodes.BadOutOfRange
            assert "outside the range" in message(bad)
            state = await call(c, opcua, "WriteSetpoint", s("diverter.position_sp"), s("reject"))
            assert state.StatusCode.is_good(), message(state)
            stop = await call(c, opcua, "Stop", s("end of shift"), s("carol"))
            assert stop.StatusCode.is_good(), message(stop)

    asyncio.run(scenario())
    records = opcua.audit()
    assert [(r.user, r.target, r.new, r.reason, r.accepted) for r in records[-4:]] == [
        ("bob via alice", "press.fill_depth_sp", 9.5, "trim", True),
        ("bob via alice", "press.fill_depth_sp", 99.0, "x", False),
        ("alice", "diverter.position_sp", "reject", "", True),
        ("carol via alice", "line", records[-1].new, "end of shift", True),
    ]


def test_every_audit_record_becomes_an_event(opcua: RunningServer) -> None:
    received: list[dict[str, Any]] = []

    class Handler:
        def event_notification(self, event: Any) -> None:
            received.append({k: v.Value for k, v in event.get_event_props_as_fields_dict().items()})

    async def scenario() -> None:
        async with client(opcua.url, "alice") as c:
            ns = opcua.server.nodes.namespace
            event_type = await c.nodes.base_event_type.get_child(f"{ns}:{AUDIT_EVENT_TYPE}")
            sub = await c.create_subscription(50, Handler())
            await sub.subscribe_events(c.nodes.server, [event_type])
            for speed in (260.0, 9999.0):
                tag = s("blender.speed_sp")
                await call(c, opcua, "WriteSetpoint", tag, d(speed), s("r"), s("dan"))
            for _ in range(100):
                if len(received) >= 2:
                    break
                await asyncio.sleep(0.05)

    asyncio.run(scenario())
    seqs = {r.seq: r for r in opcua.audit()}
    assert len(received) == 2
    for event in received:
        record = seqs[event["AuditSeq"]]
        assert event["User"] == "dan via alice" == record.user
        assert event["Target"] == "blender.speed_sp"
        assert json.loads(event["NewValue"]) == record.new
        assert event["Accepted"] == record.accepted
    assert [e["Accepted"] for e in received] == [True, False]
