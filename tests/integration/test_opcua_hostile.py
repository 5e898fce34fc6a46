"""The OPC UA server against hostile callers: OnBehalfOf only from a gateway, over-long reasons
refused, huge writes audited as bounded records, refused requests rate-limited in the trail."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asyncua import ua

from twin.audit import RATE_LIMIT_ACTION

from .conftest import RunningServer, client
from .test_opcua_server import SITE, call, d, message, s, until

pytestmark = pytest.mark.integration

MB = 1024 * 1024


def test_only_a_gateway_may_act_on_behalf_of_someone(opcua: RunningServer) -> None:
    """An operator naming someone else is refused and audited under its own name: no operator
    can put another person's name on a record."""

    async def scenario() -> None:
        async with client(opcua.url, "alice") as c:
            tag = s("press.fill_depth_sp")
            refused = await call(c, opcua, "WriteSetpoint", tag, d(9.5), s("trim"), s("bob"))
            assert refused.StatusCode.value == ua.StatusCodes.BadUserAccessDenied
            assert "only a gateway may" in message(refused)
            assert refused.InputArgumentResults[3].value == ua.StatusCodes.BadUserAccessDenied
            stop = await call(c, opcua, "Stop", s("end of shift"), s("carol"))
            assert stop.StatusCode.value == ua.StatusCodes.BadUserAccessDenied
            own = await call(c, opcua, "WriteSetpoint", tag, d(9.5), s("trim"))
            assert own.StatusCode.is_good(), message(own)

    before = opcua.plant.read("press.fill_depth_sp")
    asyncio.run(scenario())
    records = opcua.audit()
    assert [(r.user, r.action, r.reason, r.accepted) for r in records[-3:]] == [
        ("alice", "write", "trim", False),
        ("alice", "stop", "end of shift", False),
        ("alice", "write", "trim", True),
    ]
    assert "on behalf of 'bob'" in records[-3].result
    assert before != 9.5 and opcua.plant.read("press.fill_depth_sp") == 9.5


def test_an_over_long_reason_is_refused_and_a_huge_write_audited_bounded(
    opcua: RunningServer,
) -> None:
    """Refused, not cut: a reason over MAX_REASON_CHARS. A 4 MB string written to a setpoint
    is refused by the twin and audited as a record of about a kilobyte."""
    huge = "x" * (4 * MB)

    async def scenario() -> None:
        async with client(opcua.url, "gina") as c:
            tag = s("press.fill_depth_sp")
            long = await call(c, opcua, "WriteSetpoint", tag, d(9.5), s("r" * 1001), s("bob"))
            assert long.StatusCode.value == ua.StatusCodes.BadInvalidArgument
            assert long.InputArgumentResults[2].value == ua.StatusCodes.BadInvalidArgument
            assert "at most 1000" in message(long)
            ok = await call(c, opcua, "WriteSetpoint", tag, d(9.5), s("r" * 1000), s("bob"))
            assert ok.StatusCode.is_good(), message(ok)
        async with client(opcua.url, "alice") as c:
            ns = opcua.server.nodes.namespace
            node = c.get_node(ua.NodeId(f"{SITE}.diverter.position_sp", ns))
            with pytest.raises(ua.UaStatusCodeError):
                await node.write_value(ua.Variant(huge, ua.VariantType.String))

    asyncio.run(scenario())
    long, ok, write = opcua.audit()[-3:]
    assert (long.user, long.accepted) == ("bob via gina", False)
    assert long.reason.endswith("[cut: 1,001 characters]")  # a refused record: bounded
    assert (ok.accepted, ok.reason) == (True, "r" * 1000)  # the longest reason: whole
    assert (write.user, write.target, write.accepted) == ("alice", "diverter.position_sp", False)
    assert isinstance(write.new, str) and write.new.endswith("[cut: 4,194,304 characters]")
    assert len(write.new) < 1100 and len(write.result) < 300
    assert opcua.plant.read("diverter.position_sp") == 0


def test_a_flood_of_refused_writes_is_rate_limited_and_summed_up(opcua: RunningServer) -> None:
    audit = opcua.plant.audit
    burst = audit.refused_burst

    async def scenario() -> None:
        async with client(opcua.url) as c:  # anonymous: every write is refused
            ns = opcua.server.nodes.namespace
            node = c.get_node(ua.NodeId(f"{SITE}.press.fill_depth_sp", ns))
            for _ in range(burst + 150):
                with pytest.raises(ua.UaStatusCodeError):
                    await node.write_value(ua.Variant(9.0, ua.VariantType.Double))
        # The bucket refills in plant time (one record per REFUSED_EVERY_S): the summaries.
        await until(lambda: counted() == burst + 150, what="every refusal in the trail")

    def made() -> list[Any]:
        return [r for r in opcua.audit() if r.seq > before and r.user == "anonymous"]

    def counted() -> int:
        """Refusals recorded one by one, plus those the summaries say were held back."""
        return sum(r.new if r.action == RATE_LIMIT_ACTION else 1 for r in made())

    before = audit.last_seq
    asyncio.run(scenario())
    refused = [r for r in made() if r.action == "write"]
    summaries = [r for r in made() if r.action == RATE_LIMIT_ACTION]
    # The burst, and the few the bucket earned back while the flood lasted; the rest summed up.
    assert burst <= len(refused) < burst + 100 and summaries
    assert "refused requests" in summaries[0].result
