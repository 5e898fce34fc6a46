"""The OPC UA server's gateway surface: Abort, WriteSetpoint and Quarantine on behalf of a user,
audit events."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from asyncua import ua

from opcua_server.audit_events import AUDIT_EVENT_TYPE

from .conftest import RunningServer, client
from .test_opcua_server import SITE, call, d, message, s, until, until_plant_time

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
        async with client(opcua.url, "gina") as c:  # a gateway: its OnBehalfOf is honoured
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
        ("bob via gina", "press.fill_depth_sp", 9.5, "trim", True),
        ("bob via gina", "press.fill_depth_sp", 99.0, "x", False),
        ("gina", "diverter.position_sp", "reject", "", True),
        ("carol via gina", "line", records[-1].new, "end of shift", True),
    ]


def dt(when: datetime) -> ua.Variant:
    return ua.Variant(when, ua.VariantType.DateTime)


def test_quarantine_flags_a_window_on_behalf_of_a_user(opcua: RunningServer) -> None:
    clock = opcua.server.clock

    async def scenario() -> None:
        async with client(opcua.url, "gina") as c:
            await until_plant_time(opcua, 100.0)  # 100 plant s of production
            now = opcua.plant.now
            start, end = clock.utc(now - 60.0), clock.utc(now - 10.0)
            ok = await call(c, opcua, "Quarantine", dt(start), dt(end), s("gate"), s("bob"))
            assert ok.StatusCode.is_good(), message(ok)
            flagged_start, flagged_end, tablets = (v.Value for v in ok.OutputArguments)
            assert flagged_start.replace(tzinfo=UTC) == start
            assert flagged_end.replace(tzinfo=UTC) == end
            assert tablets > 500  # 50 s at about 14 tablets a second
            backwards = await call(c, opcua, "Quarantine", dt(end), dt(start), s("oops"))
            assert backwards.StatusCode.value == ua.StatusCodes.BadOutOfRange
            assert "must be after start" in message(backwards)
            assert backwards.InputArgumentResults[1].value == ua.StatusCodes.BadOutOfRange
            future = clock.utc(opcua.plant.now + 600.0)
            ahead = await call(c, opcua, "Quarantine", dt(end), dt(future), s("too early"))
            assert ahead.StatusCode.value == ua.StatusCodes.BadOutOfRange
            assert "in the future" in message(ahead)
            wrong = await call(c, opcua, "Quarantine", d(1.0), dt(end))
            assert wrong.StatusCode.value == ua.StatusCodes.BadTypeMismatch
        async with client(opcua.url, "victor") as c:
            refused = await call(c, opcua, "Quarantine", dt(start), dt(end), s("viewer tries"))
            assert refused.StatusCode.value == ua.StatusCodes.BadUserAccessDenied

    asyncio.run(scenario())
    records = [r for r in opcua.audit() if r.action == "quarantine"]
    assert [(r.user, r.reason, r.accepted) for r in records] == [
        ("bob via gina", "gate", True),
        ("gina", "oops", False),
        ("gina", "too early", False),
        ("victor", "viewer tries", False),
    ]
    assert opcua.plant.ledger.tablets_quarantined > 500


def test_every_audit_record_becomes_an_event(opcua: RunningServer) -> None:
    received: list[dict[str, Any]] = []

    class Handler:
        def event_notification(self, event: Any) -> None:
            received.append({k: v.Value for k, v in event.get_event_props_as_fields_dict().items()})

    async def scenario() -> None:
        async with client(opcua.url, "gina") as c:
            ns = opcua.server.nodes.namespace
            event_type = await c.nodes.base_event_type.get_child(f"{ns}:{AUDIT_EVENT_TYPE}")
            sub = await c.create_subscription(50, Handler())
            await sub.subscribe_events(c.nodes.server, [event_type])
            for speed in (260.0, 9999.0):
                tag = s("blender.speed_sp")
                await call(c, opcua, "WriteSetpoint", tag, d(speed), s("r"), s("dan"))
            await until(lambda: len(received) >= 2, what="two audit events")

    asyncio.run(scenario())
    seqs = {r.seq: r for r in opcua.audit()}
    assert len(received) == 2
    for event in received:
        record = seqs[event["AuditSeq"]]
        assert event["User"] == "dan via gina" == record.user
        assert event["Target"] == "blender.speed_sp"
        assert json.loads(event["NewValue"]) == record.new
        assert event["Accepted"] == record.accepted
    assert [e["Accepted"] for e in received] == [True, False]


def u64(number: int) -> ua.Variant:
    return ua.Variant(number, ua.VariantType.UInt64)


async def audit_since(c: Any, running: RunningServer, *args: ua.Variant) -> ua.CallMethodResult:
    request = ua.CallMethodRequest()
    request.ObjectId = running.server.nodes.site
    request.MethodId = ua.NodeId(f"{SITE}.AuditSince", running.server.nodes.namespace)
    request.InputArguments = list(args)
    result: ua.CallMethodResult = (await c.uaclient.call([request]))[0]
    return result


def test_audit_since_pages_the_trail_for_any_reader_with_the_events_fields(
    opcua: RunningServer,
) -> None:
    received: list[dict[str, Any]] = []

    class Handler:
        def event_notification(self, event: Any) -> None:
            received.append({k: v.Value for k, v in event.get_event_props_as_fields_dict().items()})

    answers: dict[str, list[ua.CallMethodResult]] = {}

    async def scenario() -> None:
        async with client(opcua.url, "gina") as c:
            ns = opcua.server.nodes.namespace
            event_type = await c.nodes.base_event_type.get_child(f"{ns}:{AUDIT_EVENT_TYPE}")
            sub = await c.create_subscription(50, Handler())
            await sub.subscribe_events(c.nodes.server, [event_type])
            for speed in (240.0, 250.0, 260.0, 9999.0, 255.0):
                tag = s("blender.speed_sp")
                await call(c, opcua, "WriteSetpoint", tag, d(speed), s("why"), s("dan"))
            await until(lambda: len(received) >= 5, what="five audit events")
        for user in ("victor", None):  # a viewer and an anonymous session read it too
            async with client(opcua.url, user) as c:
                pages, after = [], 0
                while True:
                    page = await audit_since(
                        c, opcua, u64(after), ua.Variant(2, ua.VariantType.UInt32)
                    )
                    assert page.StatusCode.is_good(), message(page)
                    pages.append(page)
                    records = page.OutputArguments[0].Value or []
                    if not records:
                        break
                    after = json.loads(records[-1])["AuditSeq"]
                answers[user or "anonymous"] = pages
                bad = await audit_since(c, opcua, s("one"))
                assert bad.StatusCode.value == ua.StatusCodes.BadTypeMismatch
                missing = await audit_since(c, opcua)
                assert missing.StatusCode.value == ua.StatusCodes.BadArgumentsMissing

    asyncio.run(scenario())
    trail = opcua.audit()
    assert len(trail) >= 5
    for user, pages in answers.items():
        records = [json.loads(r) for p in pages for r in p.OutputArguments[0].Value or []]
        assert [r["AuditSeq"] for r in records] == list(range(1, len(trail) + 1)), user
        assert all(len(p.OutputArguments[0].Value or []) <= 2 for p in pages)
        assert pages[0].OutputArguments[1].Value == len(trail)
        assert {p.OutputArguments[2].Value for p in pages} == {opcua.server.audit_log_id}
    # The same record read both ways: the same fields, the same Time to the microsecond.
    by_seq = {json.loads(r)["AuditSeq"]: json.loads(r) for p in answers["victor"] for r in
               p.OutputArguments[0].Value or []}  # fmt: skip
    assert len(received) == 5
    for event in received:
        record = by_seq[event["AuditSeq"]]
        for name in ("User", "Action", "Target", "OldValue", "NewValue", "Reason", "Accepted",
                     "Result", "Severity"):  # fmt: skip
            assert record[name] == event[name], name
        when = datetime.fromisoformat(record["Time"])
        assert when == event["Time"].replace(tzinfo=UTC), (record["Time"], event["Time"])
        assert record["Message"] == event["Message"].Text
