"""The OPC UA server against real asyncua clients over loopback."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, Node, ua

from core.tags import LINE_STATES, Access, DataType
from opcua_server.address_space import SIMULATION, unece_unit_id

from .conftest import RunningServer, client, secure_client, serve

pytestmark = pytest.mark.integration

SITE = "site1"


def nid(running: RunningServer, name: str) -> ua.NodeId:
    return ua.NodeId(name, running.server.nodes.namespace)


async def browse_variables(node: Node, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Node]:
    """Every variable under `node` (properties excluded), by browse path."""
    found: dict[tuple[str, ...], Node] = {}
    for child in await node.get_children(refs=ua.ObjectIds.HierarchicalReferences):
        name = (await child.read_browse_name()).Name
        node_class = await child.read_node_class()
        if node_class == ua.NodeClass.Variable:
            found[(*path, name)] = child
        elif node_class == ua.NodeClass.Object:
            found.update(await browse_variables(child, (*path, name)))
    return found


async def call(
    c: Client, running: RunningServer, method: str, *args: ua.Variant
) -> ua.CallMethodResult:
    """Call a Commands method and return the whole result (status, diagnostics, outputs)."""
    request = ua.CallMethodRequest()
    request.ObjectId = nid(running, f"{SITE}.Commands")
    request.MethodId = nid(running, f"{SITE}.Commands.{method}")
    request.InputArguments = list(args)
    results = await c.uaclient.call([request])
    result: ua.CallMethodResult = results[0]
    return result


def message(result: ua.CallMethodResult) -> str:
    return " ".join(d.AdditionalInfo or "" for d in result.InputArgumentDiagnosticInfos)


def s(text: str) -> ua.Variant:
    return ua.Variant(text, ua.VariantType.String)


def d(number: float) -> ua.Variant:
    return ua.Variant(number, ua.VariantType.Double)


async def until(condition: Any, timeout: float = 30.0, what: str = "the condition") -> None:
    """Wait for `condition`; the timeout only bounds a failure, it paces nothing."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


async def until_plant_time(running: RunningServer, plant_s: float, timeout: float = 60.0) -> None:
    """Wait until the twin has reached `plant_s`. A request sent afterwards sees what the server
    published at that plant time or later: a tick advances the twin and publishes on the
    server's loop without yielding to it, so no request is answered in between."""
    await until(lambda: running.plant.now >= plant_s, timeout, f"plant time {plant_s:g} s")


# Address space ------------------------------------------------------------------------------
def test_browse_finds_every_tag_with_units_ranges_and_access(shared_opcua: RunningServer) -> None:
    running = shared_opcua
    registry = running.plant.registry

    async def scenario() -> None:
        async with client(running.url) as c:
            ns = await c.get_namespace_index(running.server.settings.namespace_uri)
            site = await c.nodes.objects.get_child([f"{ns}:{SITE}"])
            variables = await browse_variables(site)
            plant_paths = {p for p in variables if p[0] != SIMULATION and p[0] != "Commands"}
            assert plant_paths == {(t.module, t.name) for t in registry.plant_tags()}
            truth_paths = {p[1:] for p in variables if p[0] == SIMULATION}
            assert truth_paths == {(t.module, t.name) for t in registry.truth_tags()}
            simulation = await site.get_child([f"{ns}:{SIMULATION}"])
            assert "SIMULATION ONLY" in (await simulation.read_description()).Text

            for tag in registry.values():
                path = (
                    (SIMULATION, tag.module, tag.name)
                    if tag.ground_truth
                    else (tag.module, tag.name)
                )
                node = variables[path]
                expected_id = (
                    f"{SITE}.{SIMULATION}.{tag.id}" if tag.ground_truth else (f"{SITE}.{tag.id}")
                )
                assert node.nodeid == ua.NodeId(expected_id, ns)
                assert tag.description in (await node.read_description()).Text
                access = await node.read_attribute(ua.AttributeIds.AccessLevel)
                writable = bool(access.Value.Value & ua.AccessLevel.CurrentWrite.mask)
                assert writable == (tag.access is Access.SETPOINT and not tag.ground_truth)
                assert access.Value.Value & ua.AccessLevel.HistoryRead.mask
                datatype = await node.read_data_type()
                if tag.data_type in (DataType.FLOAT, DataType.INT):
                    assert datatype.Identifier in (ua.ObjectIds.Double, ua.ObjectIds.Int64)
                    units = await (await node.get_child("0:EngineeringUnits")).read_value()
                    assert units.UnitId == unece_unit_id(tag.unit.unece)
                    assert units.DisplayName.Text == tag.unit.symbol
                    eu_range = await (await node.get_child("0:EURange")).read_value()
                    assert (eu_range.Low, eu_range.High) == (tag.low, tag.high)
                elif tag.data_type is DataType.ENUM:
                    states = await (await node.get_child("0:EnumStrings")).read_value()
                    assert [s.Text for s in states] == list(tag.states)

    asyncio.run(scenario())


def test_no_plant_folder_reveals_ground_truth(shared_opcua: RunningServer) -> None:
    running = shared_opcua
    truth_names = {t.name for t in running.plant.registry.truth_tags()}

    async def scenario() -> None:
        async with client(running.url) as c:
            site = await c.nodes.objects.get_child([f"{running.server.nodes.namespace}:{SITE}"])
            variables = await browse_variables(site)
            leaked = [p for p in variables if p[0] != SIMULATION and p[-1] in truth_names]
            assert leaked == []

    asyncio.run(scenario())


# Subscriptions ------------------------------------------------------------------------------
def test_subscription_delivers_changes_with_plant_source_timestamps(
    shared_opcua: RunningServer,
) -> None:
    running = shared_opcua
    tags = ["press.tablet_weight", "api_feeder.mass_flow_pv", "line.state_changes"]
    received: list[tuple[str, ua.DataValue]] = []

    class Handler:
        def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
            received.append((node.nodeid.Identifier, data.monitored_item.Value))

    def weights() -> list[ua.DataValue]:
        return [dv for name, dv in received if name == f"{SITE}.press.tablet_weight"]

    async def scenario() -> tuple[float, list[ua.DataValue], float]:
        # Past the first step: at plant time 0 the press has made no tablet (its weight is Bad).
        await until_plant_time(running, 2.0)
        async with client(running.url) as c:
            sub = await c.create_subscription(50, Handler())
            subscribed = running.plant.now
            await sub.subscribe_data_change([c.get_node(nid(running, f"{SITE}.{t}")) for t in tags])
            # Ten one-second press steps, however long the server takes to publish them.
            await until(lambda: len(weights()) >= 10, what="ten tablet weights")
            got, plant_now = weights(), running.plant.now  # no notification in between
            await sub.delete()
        return subscribed, got, plant_now

    subscribed, weights_got, plant_now = asyncio.run(scenario())
    start_utc = running.server.clock.start_utc
    stamps = [dv.SourceTimestamp for dv in weights_got]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert all(dv.StatusCode.is_good() for dv in weights_got)
    assert all(390.0 < dv.Value.Value < 410.0 for dv in weights_got)
    # Source time is plant time mapped to UTC, not the server's clock: the tenth weight is
    # stamped between the plant time at subscription (the first is at most a step older) and
    # the plant time when it had arrived.
    latest = (stamps[-1] - start_utc).total_seconds()
    assert subscribed < latest <= plant_now


# Writes -------------------------------------------------------------------------------------
def test_operator_write_is_accepted_and_audited(opcua: RunningServer) -> None:
    async def scenario() -> float:
        async with client(opcua.url, "alice") as c:
            node = c.get_node(nid(opcua, f"{SITE}.api_feeder.mass_flow_sp"))
            await node.write_value(ua.DataValue(ua.Variant(2.1, ua.VariantType.Double)))
            value: float = await node.read_value()
            return value

    assert asyncio.run(scenario()) == pytest.approx(2.1)
    record = opcua.audit()[-1]
    assert (record.user, record.action, record.target) == (
        "alice",
        "write",
        "api_feeder.mass_flow_sp",
    )
    assert record.accepted and record.old == pytest.approx(2.0) and record.new == 2.1


@pytest.mark.parametrize("user", [None, "victor"])
def test_anonymous_and_viewer_writes_are_denied_and_audited(
    opcua: RunningServer, user: str | None
) -> None:
    async def scenario() -> float:
        async with client(opcua.url, user) as c:
            node = c.get_node(nid(opcua, f"{SITE}.api_feeder.mass_flow_sp"))
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await node.write_value(ua.DataValue(ua.Variant(2.5, ua.VariantType.Double)))
            value: float = await node.read_value()
            return value

    assert asyncio.run(scenario()) == pytest.approx(2.0)
    record = opcua.audit()[-1]
    assert record.user == (user or "anonymous") and not record.accepted
    assert "may not write" in record.result


def test_invalid_writes_get_their_status_and_are_audited(opcua: RunningServer) -> None:
    cases = [
        (
            "api_feeder.mass_flow_sp",
            ua.Variant(99.0, ua.VariantType.Double),
            ua.uaerrors.BadOutOfRange,
        ),
        (
            "api_feeder.mass_flow_sp",
            ua.Variant("fast", ua.VariantType.String),
            ua.uaerrors.BadTypeMismatch,
        ),
        ("api_feeder.mode_sp", ua.Variant(7, ua.VariantType.UInt32), ua.uaerrors.BadOutOfRange),
        ("nir.api_pct", ua.Variant(10.0, ua.VariantType.Double), ua.uaerrors.BadNotWritable),
    ]

    async def scenario() -> None:
        async with client(opcua.url, "alice") as c:
            for tag, variant, error in cases:
                node = c.get_node(nid(opcua, f"{SITE}.{tag}"))
                with pytest.raises(error):
                    await node.write_value(ua.DataValue(variant))
            assert await c.get_node(
                nid(opcua, f"{SITE}.api_feeder.mass_flow_sp")
            ).read_value() == pytest.approx(2.0)

    asyncio.run(scenario())
    records = opcua.audit()[-len(cases) :]
    assert [(r.user, r.target, r.accepted) for r in records] == [
        ("alice", tag, False) for tag, _, _ in cases
    ]
    assert "outside the range" in records[0].result


# Methods ------------------------------------------------------------------------------------
def test_methods_answer_good_and_bad_arguments_without_crashing(opcua: RunningServer) -> None:
    codes = ua.StatusCodes

    async def scenario() -> None:
        async with client(opcua.url, "alice") as c:
            result = await call(c, opcua, "Start", s("again"))
            assert result.StatusCode.value == codes.BadInvalidState
            assert "cannot start the line while it is producing" in message(result)

            result = await call(
                c, opcua, "InjectFault", s("nir_bias"), s(""), d(1.0), d(0.0), s("test")
            )
            assert result.StatusCode.is_good()
            fault_id = result.OutputArguments[0].Value

            result = await call(c, opcua, "InjectFault", s("nir_bias"), s(""), d(1.0))
            assert result.StatusCode.value == codes.BadInvalidState
            result = await call(c, opcua, "InjectFault", s("gremlins"))
            assert result.StatusCode.value == codes.BadInvalidArgument
            assert result.InputArgumentResults[0].value == codes.BadInvalidArgument
            assert "unknown fault 'gremlins'" in message(result)
            result = await call(c, opcua, "InjectFault", s("bridging"), s(""), d(7.0))
            assert result.StatusCode.value == codes.BadOutOfRange
            assert result.InputArgumentResults[2].value == codes.BadOutOfRange
            result = await call(c, opcua, "InjectFault", s("bridging"), s("press"))
            assert result.StatusCode.value == codes.BadInvalidArgument
            assert "needs a feeder target" in message(result)
            result = await call(c, opcua, "InjectFault", ua.Variant(3, ua.VariantType.Int32))
            assert result.StatusCode.value == codes.BadTypeMismatch
            result = await call(c, opcua, "InjectFault")
            assert result.StatusCode.value == codes.BadArgumentsMissing
            result = await call(c, opcua, "ListFaults", s("extra"))
            assert result.StatusCode.value == codes.BadTooManyArguments

            result = await call(c, opcua, "ListFaults")
            ids, kinds, targets, magnitudes, states = (v.Value for v in result.OutputArguments)
            assert (ids, kinds, targets, magnitudes) == ([fault_id], ["nir_bias"], ["nir"], [1.0])
            assert states == ["active"]

            result = await call(c, opcua, "ClearFault", ua.Variant(fault_id, ua.VariantType.UInt32))
            assert result.StatusCode.is_good()
            result = await call(c, opcua, "ClearFault", ua.Variant(fault_id, ua.VariantType.UInt32))
            assert result.StatusCode.value == codes.BadInvalidState
            result = await call(c, opcua, "ClearFault", ua.Variant(999, ua.VariantType.UInt32))
            assert result.StatusCode.value == codes.BadInvalidArgument
            result = await call(c, opcua, "ClearFault", d(-1.0))
            assert result.StatusCode.value == codes.BadTypeMismatch
            assert (await call(c, opcua, "ListFaults")).OutputArguments[0].Value == []

            result = await call(c, opcua, "Reset")
            assert result.StatusCode.value == codes.BadInvalidState
            result = await call(c, opcua, "Stop", s("end of campaign"))
            assert result.StatusCode.is_good()
            assert result.OutputArguments[0].Value == "stopping"
            result = await call(c, opcua, "Stop")
            assert result.StatusCode.value == codes.BadInvalidState

            # The high-level API raises the status; the server keeps serving.
            commands = c.get_node(nid(opcua, f"{SITE}.Commands"))
            with pytest.raises(ua.uaerrors.BadInvalidState):
                await commands.call_method(f"{opcua.server.nodes.namespace}:Start", "x")

        async with client(opcua.url) as anonymous:
            result = await call(anonymous, opcua, "Stop")
            assert result.StatusCode.value == codes.BadUserAccessDenied
            assert "may not call methods" in message(result)
            state = anonymous.get_node(nid(opcua, f"{SITE}.line.state"))
            # The refused Stop changed nothing: the line is still running down after alice's
            # Stop (stopping), or has run dry since (stopped: about 110 plant s, 1 s at 100x).
            assert LINE_STATES[await state.read_value()] in ("stopping", "stopped")

    asyncio.run(scenario())
    actions = [(r.user, r.action, r.accepted) for r in opcua.audit()]
    assert ("alice", "inject_fault", True) in actions
    assert ("alice", "clear_fault", True) in actions
    assert ("alice", "stop", True) in actions
    assert ("anonymous", "stop", False) in actions


# Alarms and events --------------------------------------------------------------------------
def test_limit_alarms_reach_a_client_subscribed_to_the_standard_type_and_faults_are_events(
    opcua: RunningServer,
) -> None:
    events: list[Any] = []

    class Handler:
        def event_notification(self, event: Any) -> None:
            events.append(event)

    async def scenario() -> None:
        async with client(opcua.url, "alice") as c:
            fault_type = await c.nodes.base_event_type.get_child(
                f"{opcua.server.nodes.namespace}:PlantFaultEventType"
            )
            sub = await c.create_subscription(50, Handler())
            await sub.subscribe_events(
                c.nodes.server, [ua.ObjectIds.ExclusiveLimitAlarmType, fault_type]
            )
            result = await call(c, opcua, "InjectFault", s("nir_bias"), s(""), d(5.0))
            assert result.StatusCode.is_good()
            await until(
                lambda: any(getattr(e, "ConditionName", "") == "nir.api_pct" for e in events)
            )
            await call(c, opcua, "ClearFault", result.OutputArguments[0])
            await until(lambda: any(getattr(e, "FaultState", "") == "cleared" for e in events))
            await sub.delete()

    asyncio.run(scenario())
    faults = [(e.FaultKind, e.FaultState) for e in events if getattr(e, "FaultState", None)]
    assert faults[:2] == [("nir_bias", "raised"), ("nir_bias", "cleared")]
    # Filtered on ExclusiveLimitAlarmType: the server's subtype of it matches (OfType).
    alarm = next(e for e in events if getattr(e, "ConditionName", "") == "nir.api_pct")
    assert alarm.Retain is True and alarm.HighHighLimit == pytest.approx(10.5)
    assert "HighHigh" in alarm.Message.Text


# Security -----------------------------------------------------------------------------------
def test_sign_and_encrypt_with_trusted_certificate_and_not_without(tmp_path: Path) -> None:
    clients = tmp_path / "clients"
    clients.mkdir()
    with serve(tmp_path, allow_insecure=False) as running:
        assert (running.cert_dir / "server" / "cert.der").is_file()  # made on first start

        async def scenario() -> None:
            trusted = await secure_client(running, clients, "hmi", trusted=True, user="alice")
            async with trusted:
                node = trusted.get_node(nid(running, f"{SITE}.press.fill_depth_sp"))
                await node.write_value(ua.DataValue(ua.Variant(9.5, ua.VariantType.Double)))
                assert await node.read_value() == pytest.approx(9.5)
            anonymous = await secure_client(running, clients, "viewer", trusted=True)
            async with anonymous:
                await anonymous.get_node(nid(running, f"{SITE}.press.hardness")).read_value()

            stranger = await secure_client(running, clients, "stranger", trusted=False)
            with pytest.raises((ua.UaError, OSError, TimeoutError)):
                async with stranger:
                    pass
            plain = client(running.url)  # no security: no such endpoint
            with pytest.raises((ua.UaError, OSError, TimeoutError)):
                async with plain:
                    pass

        asyncio.run(scenario())
        assert running.audit()[-1].user == "alice" and running.audit()[-1].accepted


# History ------------------------------------------------------------------------------------
def test_history_backfills_the_gap_of_a_client_that_was_cut_off(opcua: RunningServer) -> None:
    tag = f"{SITE}.press.tablet_weight"
    clock = opcua.server.clock

    async def read_from(plant_s: float) -> ua.DataValue:
        """A new client's read of the tag, once its source time is `plant_s` or later."""
        async with client(opcua.url) as c:
            node = c.get_node(nid(opcua, tag))
            deadline = time.monotonic() + 30
            while True:
                value = await node.read_data_value(raise_on_bad_status=False)
                if clock.plant_time(value.SourceTimestamp) >= plant_s:
                    return value
                assert time.monotonic() < deadline, f"{tag} never reached plant time {plant_s}"
                await asyncio.sleep(0.02)

    async def scenario() -> tuple[ua.DataValue, ua.DataValue, list[ua.DataValue]]:
        # Past plant time 0, when the press has made no tablet yet (its first step is at 1 s).
        before = await read_from(1.0)
        cut_off = clock.plant_time(before.SourceTimestamp) + 100.0
        await until_plant_time(opcua, cut_off)  # cut off: 100 s of plant time pass
        after = await read_from(cut_off)
        async with client(opcua.url) as c:
            node = c.get_node(nid(opcua, tag))
            gap = await node.read_raw_history(before.SourceTimestamp, after.SourceTimestamp)
        return before, after, gap

    before, after, gap = asyncio.run(scenario())
    gap_s = (after.SourceTimestamp - before.SourceTimestamp).total_seconds()
    assert gap_s >= 100.0
    stamps = [dv.SourceTimestamp for dv in gap]
    assert stamps[0] == before.SourceTimestamp and stamps[-1] == after.SourceTimestamp
    assert stamps == sorted(stamps)

    # No hole in the backfill: every sample the server published in the gap, and only those.
    # (How many there are depends on how often the server got to publish, so no count.)
    low, high = clock.plant_time(before.SourceTimestamp), clock.plant_time(after.SourceTimestamp)

    async def published() -> list[float]:
        samples = opcua.server.history.samples(nid(opcua, tag))
        assert samples is not None
        return [s for s in samples.times[samples.start :] if low <= s <= high]

    assert stamps == [clock.utc(s) for s in opcua.run(published)]
    assert all(dv.StatusCode.is_good() for dv in gap), [dv.StatusCode for dv in gap]
    assert all(390 < dv.Value.Value < 410 for dv in gap), [dv.Value.Value for dv in gap]
    assert not math.isnan(gap[len(gap) // 2].Value.Value)


# Status codes -------------------------------------------------------------------------------
QUALITY_SPEED = 10.0  # plant seconds per wall second in the status-code test (see there)


def test_a_failing_sensor_reads_bad_and_a_refill_reads_uncertain(tmp_path: Path) -> None:
    """Quality follows the plant: NIR spectra lost or spiky (fault 8 at full strength) read
    Bad; a loss-in-weight feeder blind during a refill reads Uncertain; an untouched tag stays
    Good.

    Everything waited for is plant time. The press has no reading at plant time 0 (no tablet
    yet: Bad), so the faults go in once the line has run. The forced refill of the full API
    hopper ends at the next step and leaves the feeder volumetric for its 10 s hold: Uncertain
    for about 11 plant seconds. The server samples the twin once per publishing period, so the
    test checks what the server published in that time (its history, read over OPC UA), not
    what a poll happened to catch, and runs at 10x, where the window spans about 20 periods
    (at 100x it spans two, and a server starved for 0.1 s would publish none of it).
    """
    tags = ("nir.api_pct", "api_feeder.mass_flow_pv", "press.tablet_weight")
    with serve(tmp_path, speed=QUALITY_SPEED) as running:
        clock = running.server.clock

        async def scenario() -> tuple[float, ua.DataValue, dict[str, list[ua.DataValue]]]:
            async with client(running.url, "alice") as c:
                nodes = {tag: c.get_node(nid(running, f"{SITE}.{tag}")) for tag in tags}
                await until_plant_time(running, 5.0)  # tablets pressed, spectra read
                before = running.plant.now
                result = await call(c, running, "InjectFault", s("nir_dropout"), s("nir"), d(1.0))
                assert result.StatusCode.is_good(), message(result)
                result = await call(
                    c, running, "InjectFault", s("refill_disturbance"), s(""), d(0.1)
                )
                assert result.StatusCode.is_good(), message(result)
                injected = running.plant.now  # both faults act from here on
                end = before + 30.0  # past the refill, its hold, and many NIR periods
                await until_plant_time(running, end)
                nir = await nodes["nir.api_pct"].read_data_value(raise_on_bad_status=False)
                history = {
                    tag: await node.read_raw_history(clock.utc(before), clock.utc(end))
                    for tag, node in nodes.items()
                }
                return injected, nir, history

        injected, nir, history = asyncio.run(scenario())

    def shown(values: list[ua.DataValue]) -> list[tuple[float, str]]:
        return [(clock.plant_time(v.SourceTimestamp), v.StatusCode.name) for v in values]

    assert nir.StatusCode.is_bad(), shown([nir])
    assert nir.Value.Value is None  # a Bad value carries no number
    spectra = [v for v in history["nir.api_pct"] if clock.plant_time(v.SourceTimestamp) > injected]
    assert all(v.StatusCode.is_bad() and v.Value.Value is None for v in spectra), shown(spectra)
    feeder = history["api_feeder.mass_flow_pv"]
    assert any(v.StatusCode.is_uncertain() for v in feeder), shown(feeder)
    press = history["press.tablet_weight"]
    assert press and all(v.StatusCode.is_good() for v in press), shown(press)
