"""Alarm transitions through the pipeline, and alarm commands over MQTT.

Everything is real: the twin's OPC UA server (in-process, 10x), `python -m bridge.edge` and the
historian as child processes, Mosquitto and InfluxDB 1.x. Transitions made before the edge
first connects and while it is SIGKILLed reach MQTT once each (backfilled by
`Alarms/TransitionsSince`, as the audit trail by `AuditSince`), and InfluxDB stores every one
with its priority and ISA-18.2 state. An operator acknowledges and shelves over MQTT (the
broker attests the user; the edge calls the Part 9 methods on its behalf), and the controller
raises its own diagnosis the same way.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from core.faults import FaultSpec
from core.payload import CommandRequest, Event, decode_event
from core.topics import SiteTopics
from testkit.historian import HistorianProcess, historian_env
from testkit.servers import InfluxDB, Mosquitto
from tests.support.mqtt import Collector, collect, wait_until

from .conftest import RunningServer
from .edge_harness import SITE, EdgeProcess, Requester, edge_env, opcua_with_edge_user

pytestmark = pytest.mark.integration


def transitions(collector: Collector) -> list[Event]:
    return [e for e in (decode_event(p) for p in collector.payloads()) if e.source == "twin"]


def has_all(collector: Collector, running: RunningServer) -> bool:
    last = running.server.conditions.last_seq
    return last > 0 and set(range(1, last + 1)) <= {e.seq for e in transitions(collector)}


def inject(running: RunningServer, kind: str, magnitude: float) -> int:
    async def go() -> int:
        result = running.plant.inject(FaultSpec(kind, None, magnitude, 0.0, user="tester"))
        assert result.fault_id is not None
        return result.fault_id

    return running.run(go)


def clear(running: RunningServer, fault_id: int) -> None:
    async def go() -> None:
        running.plant.clear(fault_id, user="tester")

    running.run(go)


def test_transitions_reach_mqtt_and_influxdb_once_and_alarm_commands_work(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    with opcua_with_edge_user(tmp_path) as running:
        conditions = running.server.conditions
        historian = HistorianProcess(
            historian_env(mosquitto, influxdb, tmp_path, "historian-alarms", FLUSH_INTERVAL_S=0.1),
            tmp_path / "historian.log",
        )
        historian.start()
        historian.wait_online()  # a message published before it subscribes never reaches it
        alarms = collect(mosquitto, "operator", SiteTopics(SITE).event("alarm"))
        edge = EdgeProcess(edge_env(running, mosquitto, tmp_path), tmp_path / "edge.log")
        operator = Requester(mosquitto, "operator")
        controller = Requester(mosquitto, "controller")
        try:
            # 1. Before the edge first connects: only TransitionsSince can bring these.
            bridging = inject(running, "bridging", 0.5)
            inject(running, "punch_wear", 0.1)
            wait_until(lambda: conditions.state("equipment.punch_wear").active, 20, "raised")
            clear(running, bridging)
            wait_until(lambda: not conditions.state("equipment.bridging").active, 20, "cleared")
            edge.start()
            wait_until(lambda: has_all(alarms, running), 60, "every transition on MQTT", step=0.2)

            # 2. An operator over MQTT: acknowledge with a reason, twice, then shelve.
            ack = CommandRequest(
                "alarm", action="acknowledge", alarm="equipment.punch_wear", reason="seen via MQTT"
            )
            reply = operator.call(ack)
            assert reply.accepted, reply
            state = conditions.state("equipment.punch_wear")
            assert state.acked
            again = operator.call(ack)
            assert (again.accepted, again.code) == (False, "state")
            shelve = CommandRequest(
                "alarm",
                action="shelve",
                alarm="equipment.punch_wear",
                duration_s=600.0,
                reason="maintenance booked",
            )
            assert operator.call(shelve).accepted
            # The controller reports its own diagnosis: the same lifecycle.
            raised = CommandRequest(
                "alarm", action="raise", alarm="nir_bias", reason="NIR biased by +0.4 % w/w"
            )
            answer = controller.call(raised)
            assert (answer.accepted, answer.reason) == (True, "alarm nir_bias: raised")
            assert conditions.state("controller.nir_bias").active
            cleared = replace(raised, action="clear", reason="NIR and feeders agree again")
            answer = controller.call(cleared)
            assert (answer.accepted, answer.reason) == (True, "alarm nir_bias: cleared")
            assert not conditions.state("controller.nir_bias").active
            wait_until(lambda: has_all(alarms, running), 30, "the new transitions", step=0.2)
            by_action = {(e.action, e.target): e for e in transitions(alarms)}
            acked = by_action[("acknowledge", "equipment.punch_wear")]
            assert (acked.user, acked.reason, acked.state) == (
                "operator via edge",
                "seen via MQTT",
                "active_acked",
            )
            assert by_action[("shelve", "equipment.punch_wear")].state == "shelved"
            report = by_action[("raise", "controller.nir_bias")]
            assert (report.user, report.priority) == ("controller via edge", 700)

            # 3. While the edge is dead: backfilled when it is back. MQTT is at least once (an
            # outbox row the broker acknowledged just before the kill may go again); what was
            # forwarded well before the kill is not sent again.
            time.sleep(1.0)  # let the broker's PUBACKs reach the outbox and the mark
            before = conditions.last_seq
            first = len(transitions(alarms))
            edge.kill()
            noise = inject(running, "feeder_noise", 3.0)
            wait_until(lambda: conditions.state("equipment.feeder_noise").active, 20, "raised")
            clear(running, noise)
            wait_until(lambda: not conditions.state("equipment.feeder_noise").active, 20, "cleared")
            edge.start()
            wait_until(lambda: has_all(alarms, running), 60, "the backfill", step=0.2)
            last = conditions.last_seq
            seqs = [e.seq for e in transitions(alarms)]
            resent = [seq for seq in seqs[first:] if seq <= before]
            assert not resent, f"transitions forwarded before the kill sent again: {resent}"
            assert set(seqs) == set(range(1, last + 1))

            # 4. InfluxDB: every transition once, with its priority and state.
            query = f"SELECT * FROM events WHERE site = '{SITE}' AND kind = 'alarm'"

            def stored() -> list[dict[str, object]]:
                return [r for r in influxdb.query(query) if r["source"] == "twin"]

            wait_until(lambda: len(stored()) >= last, 30, f"{last} alarm points", step=0.5)
            rows = stored()
            assert sorted(int(str(r["seq"])) for r in rows) == list(range(1, last + 1))
            assert all(r["priority"] and r["state"] for r in rows)
            noisy = [r for r in rows if r["target"] == "equipment.feeder_noise"]
            assert [r["action"] for r in noisy] == ["raise", "clear"]
            assert "backfilled" in edge.text() and "alarm transitions" in edge.text()
        finally:
            edge.kill()
            historian.kill()
            operator.close()
            controller.close()
            alarms.client.disconnect()
