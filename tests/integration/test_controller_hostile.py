"""The controller against bad input on a real broker: a bad retained mode switch at start-up (which
used to crash-loop it), more of them while it runs, and garbage telemetry and replies, with the
credentials of the users the ACL lets publish there, interleaved with good telemetry."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from controller.messages import MAX_MODE_BYTES
from core.text import MAX_REASON_CHARS
from testkit.servers import Mosquitto
from twin import Plant

from .test_controller_service import (
    TOPICS,
    Edge,
    events,
    mqtt_client,
    running,
    settings,
    wait_until,
)

pytestmark = pytest.mark.integration

MODE = TOPICS.mode("controller")
BAD_MODES = [
    b"[" * 2000 + b"]" * 2000,  # nested too deeply
    b'{"v": 1, "mode": "manual", "reason": ' + b"9" * 4000 + b"}",  # a number too long
    b'{"v": 1e999, "mode": "manual"}',
    b"\xff\xfe manual",
    b'{"v": 1, "mode": ["manual"]}',
    json.dumps({"v": 1, "mode": "manual", "reason": "r" * (MAX_REASON_CHARS + 1)}).encode(),
    b"manual" * (MAX_MODE_BYTES // 6 + 1),
]
BAD_TELEMETRY = [
    b"[" * 100_000 + b"]" * 100_000,
    b"\xff" * 1000,
    b'{"v":1,"site":"site1","module":"press","sent_ns":1,"samples":[{"tag":"press.main_force",'
    b'"value":' + b"9" * 5000 + b',"quality":"good","source_ns":1,"server_ns":1,"seq":1}]}',
    b'{"v":1,"site":"site1","module":"press","sent_ns":1,"samples":[{"tag":"press.main_force",'
    b'"value":1' + b"0" * 400 + b',"quality":"good","source_ns":1,"server_ns":1,"seq":1}]}',
    b'{"v":1,"site":"site1","module":"press","sent_ns":1,"samples":"none"}',
]


def test_bad_mode_switches_and_messages_never_stop_the_controller(mosquitto: Mosquitto) -> None:
    broker = mosquitto
    operator = mqtt_client(broker, "operator")
    operator.publish(MODE, BAD_MODES[0], qos=1, retain=True).wait_for_publish(5)
    edge = Edge(broker, Plant(seed=2, warm_start=True))
    watcher, seen = events(broker)
    try:
        with running(settings(broker)) as service:
            # The bad retained switch is handed over at connection: ignored, audited, running.
            wait_until(lambda: service.counters.ignored_modes == 1, 10, "the retained switch")
            edge.publish_run(5)
            wait_until(lambda: service.counters.batches > 0, 10, "telemetry")
            for payload in BAD_MODES[1:]:
                operator.publish(MODE, payload, qos=1, retain=True).wait_for_publish(5)
                for bad in BAD_TELEMETRY:  # as the only user that may publish telemetry
                    edge.client.publish(TOPICS.telemetry("press"), bad, qos=1)
                edge.client.publish(TOPICS.reply("controller"), b"\xff" * 100, qos=1)
                edge.publish_run(2)
            wait_until(lambda: service.counters.ignored_modes == len(BAD_MODES), 10, "every switch")
            wait_until(lambda: service.counters.bad_payloads >= 3, 10, "the bad telemetry")
            batches = service.counters.batches
            edge.publish_run(5)
            wait_until(lambda: service.counters.batches > batches, 10, "telemetry after them")
            assert service.feed.enabled and service.connected.is_set()

            def ignored() -> list[Any]:
                return [e for e in seen if e.kind == "audit" and e.action == "mode"]

            wait_until(lambda: len(ignored()) >= len(BAD_MODES), 10, "the audit records")
            time.sleep(0.5)
            assert len(ignored()) == len(BAD_MODES)  # once per distinct payload
            assert all(not e.accepted and e.result.startswith("ignored: ") for e in ignored())
            assert all(len(e.result) < 300 for e in ignored())

            # A reconnection hands the last bad switch over again: not audited again.
            watcher.loop_stop()
            broker.stop()
            broker.start()
            wait_until(lambda: service.counters.connections == 2, 15, "a second connection")
            watcher, seen = events(broker)
            wait_until(
                lambda: service.counters.ignored_modes == len(BAD_MODES) + 1, 10, "the retained"
            )
            wait_until(edge.client.is_connected, 10, "the edge stand-in again")
            batches = service.counters.batches
            edge.publish_run(3)
            wait_until(lambda: service.counters.batches > batches, 10, "telemetry after it")

            # A good switch is still followed.
            good = json.dumps({"v": 1, "mode": "manual", "user": "alice", "reason": "ok"})
            wait_until(operator.is_connected, 10, "the operator again")
            operator.publish(MODE, good.encode(), qos=1, retain=True).wait_for_publish(5)
            wait_until(lambda: not service.feed.enabled, 10, "the good switch")
            wait_until(lambda: any(e.action == "mode" for e in seen), 10, "its audit record")
            time.sleep(0.5)
            assert service.connected.is_set()
    finally:
        operator.publish(MODE, b"", qos=1, retain=True).wait_for_publish(5)
        operator.loop_stop()
        edge.close()
        watcher.loop_stop()
    modes = [(e.user, e.accepted, e.new) for e in seen if e.kind == "audit" and e.action == "mode"]
    assert modes == [("alice", True, "manual")]  # the bad switch again: not a second record
