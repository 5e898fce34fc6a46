"""A quarantine over the command path: MQTT `command/quarantine/<user>` -> edge -> OPC UA
`Commands.Quarantine` -> the twin's ledger, with replies, audit events and the broker's ACL.

Everything is real: the twin's OPC UA server (in-process, accelerated), `python -m bridge.edge`
as a child process and Mosquitto. No historian: nothing here is about storage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.payload import CommandRequest, decode_event
from core.topics import SiteTopics
from testkit.servers import Mosquitto
from tests.support.mqtt import client as mqtt_client
from tests.support.mqtt import collect, publish_and_wait, wait_until

from .conftest import RunningServer
from .edge_harness import (
    SITE,
    EdgeProcess,
    Requester,
    edge_env,
    opcua_with_edge_user,
    plant_ns,
    wait_for_plant_time,
)

pytestmark = pytest.mark.integration


@dataclass
class Gateway:
    opcua: RunningServer
    broker: Mosquitto
    edge: EdgeProcess


@pytest.fixture
def gateway(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Gateway]:
    with opcua_with_edge_user(tmp_path, speed=20.0) as running:
        edge = EdgeProcess(edge_env(running, mosquitto, tmp_path), tmp_path / "edge.log")
        edge.start()
        try:
            yield Gateway(running, mosquitto, edge)
        finally:
            edge.kill()
            print(edge.text()[-4000:])


def quarantined(running: RunningServer) -> float:
    async def read() -> float:
        return running.plant.ledger.tablets_quarantined

    return running.run(read)


def test_quarantine_round_trip_refusals_audit_and_acl(gateway: Gateway) -> None:
    running, broker = gateway.opcua, gateway.broker
    audit = collect(broker, "operator", SiteTopics(SITE).all_audit)
    wait_until(lambda: "subscribing to" in gateway.edge.text(), 30, "the edge")
    wait_for_plant_time(running, 100.0)
    now = running.plant.now
    operator, controller = Requester(broker, "operator"), Requester(broker, "controller")
    try:
        start, end = plant_ns(running, now - 60.0), plant_ns(running, now - 20.0)
        ok = operator.call(CommandRequest("quarantine", start_ns=start, end_ns=end, reason="drill"))
        assert ok.accepted and ok.code == "accepted", ok
        assert abs(ok.detail["start_ns"] - start) < 1000 and abs(ok.detail["end_ns"] - end) < 1000
        assert ok.detail["tablets"] > 300  # 40 s at about 14 tablets a second
        # The controller may ask too (its own name); an overlap holds back only what is new.
        more = controller.call(
            CommandRequest(
                "quarantine",
                start_ns=plant_ns(running, now - 30.0),
                end_ns=plant_ns(running, now - 10.0),
                reason="diverter stuck",
            )
        )
        assert more.accepted, more
        assert 0 < more.detail["tablets"] < ok.detail["tablets"]
        held = ok.detail["tablets"] + more.detail["tablets"]
        assert abs(quarantined(running) - held) <= 2  # each reply rounds its count

        # Refused: by the payload schema, by the edge, and by the plant (end in the future
        # while the press runs), each with its code; none changes the ledger.
        backwards = operator.call(CommandRequest("quarantine", start_ns=end, end_ns=start))
        assert (backwards.accepted, backwards.code) == (False, "invalid"), backwards
        assert "'end_ns' must be after 'start_ns'" in backwards.reason
        long = operator.call(
            CommandRequest("quarantine", start_ns=start, end_ns=start + 7200 * 10**9)
        )
        assert (long.accepted, long.code) == (False, "range"), long
        ahead = operator.call(
            CommandRequest(
                "quarantine", start_ns=end, end_ns=plant_ns(running, running.plant.now + 600)
            )
        )
        assert (ahead.accepted, ahead.code) == (False, "range"), ahead
        assert "in the future" in ahead.reason

        # The broker's ACL: the viewer may not publish a command, nor the operator under the
        # controller's name; neither reaches the plant.
        before = len(running.audit())
        viewer = mqtt_client(broker, "viewer")
        body = json.dumps(
            {"v": 1, "kind": "quarantine", "start_ns": start, "end_ns": end + 10**10}
        ).encode()
        publish_and_wait(viewer, SiteTopics(SITE).command("quarantine", "viewer"), body)
        operator.send(
            CommandRequest("quarantine", start_ns=start, end_ns=end + 10**10),
            as_user="controller",
        )
        time.sleep(2.0)
        assert len(running.audit()) == before
        assert abs(quarantined(running) - held) <= 2
        viewer.disconnect()
    finally:
        operator.close()
        controller.close()

    # The twin's audit trail names the requester and the edge; the edge's events say who.
    records = [r for r in running.audit() if r.action == "quarantine"]
    assert [(r.user, r.reason, r.accepted) for r in records] == [
        ("operator via edge", "drill", True),
        ("controller via edge", "diverter stuck", True),
        ("operator via edge", "", False),  # the one the plant refused
    ]
    wait_until(
        lambda: sum(decode_event(p).action == "command:quarantine" for p in audit.payloads()) >= 10,
        15,
        "the edge's audit events",
    )
    events = [decode_event(p) for p in audit.payloads()]
    edge_events = [e for e in events if e.source == "edge" and e.action == "command:quarantine"]
    assert {e.user for e in edge_events} == {"operator", "controller"}
    # (the request that did not parse names no target)
    assert {e.target for e in edge_events} == {"genealogy", ""}
    results = [e.result for e in edge_events if e.result != "received"]
    assert sum(r.startswith("accepted: quarantined") for r in results) == 2
    assert sum(r.startswith("range") for r in results) == 2
    assert sum(r.startswith("invalid") for r in results) == 1
    assert any(
        e.source == "twin" and e.action == "quarantine" and e.user == "controller via edge"
        for e in events
    )
