"""The edge gateway end to end: OPC UA server -> edge -> Mosquitto -> historian -> InfluxDB.

Everything is real: the twin's OPC UA server (in-process, accelerated), `python -m bridge.edge`
and `plant bridge historian` as child processes, Mosquitto and InfluxDB 1.x from
tests/support. Samples are read back from InfluxDB with InfluxQL and compared with the
server's own history (what it published).
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
from testkit.historian import HistorianProcess, historian_env
from testkit.loss import influx_times
from testkit.servers import InfluxDB, Mosquitto
from tests.support.mqtt import client as mqtt_client
from tests.support.mqtt import collect, publish_and_wait, wait_until

from .conftest import RunningServer
from .edge_harness import (
    ROOT,
    SITE,
    EdgeProcess,
    Requester,
    edge_env,
    opcua_with_edge_user,
    plant_ns,
    settle,
    wait_for_plant_time,
)

pytestmark = pytest.mark.integration


@dataclass
class Pipeline:
    opcua: RunningServer
    broker: Mosquitto
    influx: InfluxDB
    edge: EdgeProcess
    historian: HistorianProcess


@pytest.fixture
def pipeline(tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB) -> Iterator[Pipeline]:
    with opcua_with_edge_user(tmp_path) as running:
        historian = HistorianProcess(
            historian_env(
                mosquitto, influxdb, tmp_path, "historian-edge-test", FLUSH_INTERVAL_S=0.1
            ),
            tmp_path / "historian.log",
        )
        historian.start()
        historian.wait_online()
        edge = EdgeProcess(edge_env(running, mosquitto, tmp_path), tmp_path / "edge.log")
        edge.start()
        try:
            yield Pipeline(running, mosquitto, influxdb, edge, historian)
        finally:
            edge.kill()
            historian.kill()
            print(edge.text()[-4000:])


def test_samples_arrive_complete_in_order_with_source_timestamps(pipeline: Pipeline) -> None:
    running, influx = pipeline.opcua, pipeline.influx
    status = collect(pipeline.broker, "operator", SiteTopics(SITE).status("edge"))
    registry = running.plant.registry
    # Counted from each tag's first stored sample: every tag must have one first.
    wait_until(lambda: len(influx_times(influx)) >= len(registry), 30, "every tag in InfluxDB")
    start = {tag: min(times) for tag, times in influx_times(influx).items()}
    end_plant = running.plant.now + 100.0  # 10 s of wall time at 10x
    wait_for_plant_time(running, end_plant)
    result = settle(influx, running, start, plant_ns(running, end_plant), timeout=30)
    assert result.lost == 0 and result.extra == 0, str(result)
    assert result.expected > 1000, str(result)
    assert set(influx_times(influx)) == set(running.plant.registry), "every tag arrives"

    # Per tag, the sequence numbers grow with the source times: published in order.
    rows = influx.query(
        f"SELECT mass_flow_pv, mass_flow_pv_seq FROM telemetry WHERE "
        f"site = '{SITE}' AND module = 'api_feeder'"
    )
    seqs = [r["mass_flow_pv_seq"] for r in rows if r["mass_flow_pv_seq"] is not None]
    assert len(seqs) > 50 and seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # Source timestamps are the plant's: the stored times are the server's history times.
    assert status.payloads()[-1:] == [b"online"]
    pipeline.edge.terminate()
    wait_until(lambda: status.payloads()[-1:] == [b"offline"], 10, "offline status")


def test_commands_round_trip_with_audit_events_and_acl(pipeline: Pipeline) -> None:
    running, broker = pipeline.opcua, pipeline.broker
    audit = collect(broker, "operator", SiteTopics(SITE).all_audit)
    wait_until(lambda: running.server.nodes is not None and _edge_ready(pipeline), 30, "edge")
    operator = Requester(broker, "operator")
    try:
        ok = operator.call(
            CommandRequest("setpoint", tag="press.fill_depth_sp", value=9.0, reason="trim weight")
        )
        assert ok.accepted and ok.code == "accepted", ok
        assert ok.detail["new"] == 9.0
        far = operator.call(CommandRequest("setpoint", tag="press.fill_depth_sp", value=99.0))
        assert (far.accepted, far.code) == (False, "range"), far
        unknown = operator.call(CommandRequest("setpoint", tag="press.nope", value=1.0))
        assert unknown.code == "unknown_tag"
        stop = operator.call(CommandRequest("line", action="stop", reason="end of shift"))
        assert stop.accepted and stop.detail["state"] in ("stopping", "stopped"), stop
        start = operator.call(CommandRequest("line", action="start"))
        assert start.code in ("accepted", "state"), start
        injected = operator.call(
            CommandRequest(
                "fault", action="inject", fault="nir_bias", magnitude=0.5, reason="drill"
            )
        )
        assert injected.accepted, injected
        fault_id = injected.detail["fault_id"]
        listed = operator.call(CommandRequest("fault", action="list"))
        assert [f["fault_id"] for f in listed.detail] == [fault_id]
        assert listed.detail[0]["kind"] == "nir_bias"
        cleared = operator.call(CommandRequest("fault", action="clear", fault_id=fault_id))
        assert cleared.accepted, cleared
        assert operator.call(CommandRequest("fault", action="list")).detail == []

        # The broker's ACL: the viewer may not publish a command at all, nor the operator
        # under another user's name; neither has any effect on the plant.
        before = len(running.audit())
        viewer = mqtt_client(broker, "viewer")
        topic = SiteTopics(SITE).command("setpoint", "viewer")
        body = json.dumps(
            {"v": 1, "kind": "setpoint", "tag": "press.fill_depth_sp", "value": 12.0}
        ).encode()
        publish_and_wait(viewer, topic, body)
        operator.send(
            CommandRequest("setpoint", tag="press.fill_depth_sp", value=12.5), as_user="controller"
        )
        time.sleep(2.0)
        assert len(running.audit()) == before
        assert running.plant.read("press.fill_depth_sp") == 9.0
        viewer.disconnect()
    finally:
        operator.close()

    # The twin's audit trail names the requester and the edge; the audit events say who.
    records = [r for r in running.audit() if r.user.startswith("operator")]
    assert records and all(r.user == "operator via edge" for r in records)
    assert ("write", "press.fill_depth_sp", 9.0, "trim weight", True) in [
        (r.action, r.target, r.new, r.reason, r.accepted) for r in records
    ]
    wait_until(lambda: len(_events(audit)) >= 20, 15, "audit events")
    events = _events(audit)
    twin_events = [e for e in events if e.source == "twin"]
    edge_events = [e for e in events if e.source == "edge"]
    assert {e.user for e in edge_events} == {"operator"}
    assert any(
        e.user == "operator via edge"
        and e.target == "press.fill_depth_sp"
        and e.new == 9.0
        and e.accepted
        for e in twin_events
    )
    assert any(e.result.startswith("range") and not e.accepted for e in edge_events)
    assert not any("viewer" in e.user or "controller" in e.user for e in events)


def test_setpoint_ranges_are_the_servers_not_the_edges_layout(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """A pod whose press takes deeper fills than the default layout's: the edge (default layout,
    told nothing) holds commands to the range the server publishes as EURange."""
    default = (ROOT / "core" / "layouts" / "pcmm_default.toml").read_text()
    wider = default.replace(
        'id = "press"\ntype = "press"\nfeeds = "diverter"\n',
        'id = "press"\ntype = "press"\nfeeds = "diverter"\n'
        "[module.params]\nmin_fill_depth_mm = 8.0\nmax_fill_depth_mm = 15.0\n",
    )
    assert wider != default
    layout = tmp_path / "wide_press.toml"
    layout.write_text(wider)
    with opcua_with_edge_user(tmp_path, layout=str(layout)) as running:
        edge = EdgeProcess(edge_env(running, mosquitto, tmp_path), tmp_path / "edge.log")
        edge.start()
        operator = Requester(mosquitto, "operator")
        try:
            wait_until(lambda: "subscribing to" in edge.text(), 30, "edge")
            # 14 mm: beyond the default layout's 13 mm, within this press's 15 mm.
            deep = operator.call(CommandRequest("setpoint", tag="press.fill_depth_sp", value=14.0))
            assert deep.accepted, deep
            # 7.5 mm: within the default's 7 mm, below this press's 8 mm; refused by the edge.
            shallow = operator.call(
                CommandRequest("setpoint", tag="press.fill_depth_sp", value=7.5)
            )
            assert (shallow.accepted, shallow.code) == (False, "range"), shallow
            assert "8..15" in shallow.reason, shallow
            assert running.plant.read("press.fill_depth_sp") == 14.0
        finally:
            operator.close()
            edge.kill()


def _edge_ready(pipeline: Pipeline) -> bool:
    return "subscribing to" in pipeline.edge.text()


def _events(collector: object) -> list:  # type: ignore[type-arg]
    return [decode_event(p) for p in collector.payloads()]  # type: ignore[attr-defined]
