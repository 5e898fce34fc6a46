"""Hostile input never stops the edge: every kind of bad command and bad outbox row, with a real
user's credentials, interleaved with good commands and telemetry.

Everything is real: the twin's OPC UA server (in-process, accelerated; the edge's account is a
gateway), `python -m bridge.edge` as a child process and Mosquitto with the deployed
configuration (1 MiB packets) and ACL. The edge's outbox is first seeded with rows an older
edge could have left there (a reply to `pcmm/v1/#`, an audit event larger than the broker
takes, a row nobody can decode), which used to stop it at every start.

After each hostile request a good command is answered, so the edge is alive throughout; at the
end: every telemetry sample the server published reached MQTT (counted against the server's
own history), the hostile rows are dead letters with their reasons, no reply went anywhere
but the requester's own reply topic, and the twin's good audit records arrived unchanged.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from asyncua import Client, ua
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.deadletter import read_deadletters
from bridge.edge.outbox import Message, Outbox
from bridge.spool import Spool
from core.payload import CommandReply, CommandRequest, decode_batch, decode_event
from core.text import MAX_FIELD_CHARS
from core.topics import SiteTopics
from testkit.loss import tally
from testkit.servers import Mosquitto
from tests.support.mqtt import Collector, collect, wait_until
from tests.support.mqtt import client as mqtt_client

from .conftest import RunningServer
from .edge_harness import (
    SITE,
    EdgeProcess,
    Requester,
    edge_env,
    opcua_with_edge_user,
    truth_times,
    wait_for_plant_time,
)

pytestmark = pytest.mark.integration

TOPICS = SiteTopics(SITE)
KB, MB = 1024, 1024 * 1024
GOOD_SEED = b'{"seeded": "good"}'


@dataclass
class Gateway:
    opcua: RunningServer
    broker: Mosquitto
    edge: EdgeProcess
    deadletters: Path


def seed_outbox(spool_path: Path) -> None:
    """Rows an older edge could have left in its outbox, the hostile between good ones."""
    outbox = Outbox(Spool(spool_path))
    outbox.put(
        [
            Message(TOPICS.event("state"), GOOD_SEED),
            Message("pcmm/v1/#", b'{"v":1,"accepted":false}', correlation=b"old"),
            Message(TOPICS.audit("twin"), b'{"v":1,"reason":"' + b"r" * (2 * MB) + b'"}'),
            Message(TOPICS.event("state"), GOOD_SEED),
        ]
    )
    outbox.spool.put_many([b"\xff\xfe not an outbox row"])
    outbox.spool.close()


@pytest.fixture
def gateway(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Gateway]:
    with opcua_with_edge_user(tmp_path, speed=10.0) as running:
        env = edge_env(running, mosquitto, tmp_path)
        seed_outbox(Path(env["PLANT_EDGE_SPOOL_PATH"]))
        edge = EdgeProcess(env, tmp_path / "edge.log")
        try:
            yield Gateway(running, mosquitto, edge, tmp_path / "edge.spool.deadletters.sqlite")
        finally:
            edge.kill()
            print(edge.text()[-6000:])


def publish(
    client: mqtt.Client,
    topic: str,
    payload: bytes,
    response_topic: str | bytes | None,
    correlation: bytes | None = None,
) -> bytes:
    """Publish a raw request (QoS 1) with whatever MQTT 5 properties; its correlation data."""
    correlation = correlation or uuid.uuid4().bytes
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if response_topic is not None:
        props.ResponseTopic = response_topic
    props.CorrelationData = correlation
    client.publish(topic, payload, qos=1, properties=props)
    return correlation


def setpoint(tag: str, value: Any, reason: str = "hostile") -> bytes:
    body = {"v": 1, "kind": "setpoint", "tag": tag, "value": value, "reason": reason}
    return json.dumps(body).encode()


FILL = TOPICS.command("setpoint", "operator")
#: (what it is, topic, payload, response topic, the reply codes it may get; None: no reply)
HOSTILE: list[tuple[str, str, bytes, str | None, tuple[str, ...]]] = [
    ("a wildcard response topic", FILL, setpoint("press.fill_depth_sp", 99.0), "pcmm/v1/#",
     ("range",)),
    ("another user's reply topic", FILL, setpoint("press.fill_depth_sp", 99.0),
     TOPICS.reply("controller"), ("range",)),
    ("a response topic of 10,000 characters", FILL, setpoint("press.fill_depth_sp", 99.0),
     "x" * 10_000, ("range",)),
    ("a reason of 900 KiB", FILL, setpoint("press.fill_depth_sp", 9.0, "r" * (900 * KB)),
     "pcmm/v1/#", ("invalid",)),  # refused unread: larger than any command
    ("a reason of 40,000 characters", FILL,
     setpoint("press.fill_depth_sp", 9.0, "r" * 40_000), None, ("invalid",)),
    ("a string setpoint of 900 KiB", FILL, setpoint("diverter.position_sp", "s" * (900 * KB)),
     None, ("invalid",)),
    ("a string setpoint of 40,000 characters", FILL,
     setpoint("diverter.position_sp", "s" * 40_000), None, ("range",)),
    ("a tag id of 900 KiB", FILL, setpoint("t" * (900 * KB), 1.0), None, ("invalid",)),
    ("a tag id of 40,000 characters", FILL, setpoint("t" * 40_000, 1.0), None, ("invalid",)),
    ("JSON nested 400,000 deep", FILL, b"[" * (400 * KB) + b"]" * (400 * KB), None,
     ("invalid",)),
    ("a number of 5,000 digits", FILL, b'{"v":1,"kind":"setpoint","tag":"press.fill_depth_sp",'
     b'"value":' + b"9" * 5000 + b"}", None, ("invalid",)),
    ("a number beyond any float", FILL, b'{"v":1,"kind":"setpoint","tag":"press.fill_depth_sp",'
     b'"value":1' + b"0" * 400 + b"}", None, ("range", "invalid")),
    ("invalid UTF-8", FILL, b"\xff\xfe\xfd" * 1000, None, ("invalid",)),
    ("wrong types", FILL, b'{"v":1,"kind":"setpoint","tag":["press"],"value":{"a":1}}', None,
     ("invalid",)),
    ("an unknown kind of 10,000 characters", TOPICS.base + "/command/" + "k" * 10_000
     + "/operator", b'{"v":1,"kind":"line","action":"start"}', None, ("invalid",)),
    ("a fault kind of 900 KiB", TOPICS.command("fault", "operator"),
     b'{"v":1,"kind":"fault","action":"inject","fault":"' + b"f" * (900 * KB) + b'"}', None,
     ("invalid",)),
]  # fmt: skip


def anonymous_huge_write(running: RunningServer, size: int) -> None:
    """An anonymous OPC UA write of a huge string to a setpoint: refused, audited."""

    async def write() -> None:
        async with Client(running.url, timeout=30) as c:
            ns = running.server.nodes.namespace
            node = c.get_node(ua.NodeId(f"{SITE}.diverter.position_sp", ns))
            with pytest.raises(ua.UaStatusCodeError):
                await node.write_value(ua.Variant("w" * size, ua.VariantType.String))

    asyncio.run(write())


def samples_on_mqtt(telemetry: Collector) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for _, payload in list(telemetry.messages):
        for sample in decode_batch(payload).samples:
            out.setdefault(sample.tag, []).append(sample.source_ns)
    return out


def test_hostile_commands_and_rows_never_stop_the_edge(gateway: Gateway) -> None:
    running, broker, edge = gateway.opcua, gateway.broker, gateway.edge
    telemetry = collect(broker, "operator", TOPICS.all_telemetry)
    events = collect(broker, "operator", TOPICS.base + "/events/#")
    elsewhere = collect(broker, "controller", TOPICS.reply("controller"))
    metrics = collect(broker, "operator", TOPICS.metrics("edge"))
    edge.start()
    wait_until(lambda: "subscribing to" in edge.text(), 30, "the edge")
    operator = Requester(broker, "operator")
    good_values = iter([9.0, 9.5] * 20)
    answered: list[CommandReply] = []

    def good_command() -> None:
        """A good command answered: the edge is alive and still carries commands out."""
        value = next(good_values)
        reply = operator.call(
            CommandRequest("setpoint", tag="press.fill_depth_sp", value=value, reason="good")
        )
        assert reply.accepted and reply.detail["new"] == value, reply
        answered.append(reply)

    try:
        good_command()
        for what, topic, payload, response_topic, codes in HOSTILE:
            correlation = publish(operator.client, topic, payload, response_topic)

            def replied(c: bytes = correlation) -> bool:
                return c in operator.replies

            wait_until(replied, 20, f"a reply to {what}")
            reply = operator.replies[correlation]
            assert not reply.accepted and reply.code in codes, (what, reply)
            assert len(reply.reason) <= MAX_FIELD_CHARS + 40, what
            assert edge.running, what
            good_command()

        # Invalid UTF-8 in the response topic: the broker drops the publisher; nothing reaches
        # the edge, which carries on.
        rogue = mqtt_client(broker, "operator")
        publish(rogue, FILL, setpoint("press.fill_depth_sp", 99.0), b"pcmm/\xff\xfe")
        wait_until(lambda: not rogue.is_connected(), 10, "the broker to drop the publisher")
        rogue.loop_stop()
        good_command()

        # Through OPC UA: an anonymous write of a 2 MiB string (its audit record used to make an
        # MQTT event larger than the broker takes).
        before_write = running.plant.audit.last_seq
        anonymous_huge_write(running, 2 * MB)
        good_command()
    finally:
        operator.close()

    # The edge is alive and still forwarding: every sample the server published up to now is
    # on MQTT (the collector was subscribed before the edge started).
    end_plant = running.plant.now
    wait_for_plant_time(running, end_plant + 20.0)
    assert edge.running, "the edge died"
    end_ns = max(t for times in samples_on_mqtt(telemetry).values() for t in times)

    def counted() -> Any:
        stored = samples_on_mqtt(telemetry)
        start = {tag: min(times) for tag, times in stored.items()}
        return tally(truth_times(running), stored, start, end_ns)

    wait_until(lambda: counted().lost == 0, 30, "every sample on MQTT")
    result = counted()
    assert result.lost == 0 and result.extra == 0 and result.expected > 1000, str(result)

    # The seeded hostile rows are dead letters, whole, with their reasons; the good ones arrived.
    letters = read_deadletters(gateway.deadletters)
    reasons = {letter.topic: letter.reason for letter in letters}
    assert "not a topic one can publish to" in reasons["pcmm/v1/#"]
    assert (
        "larger than the broker's maximum packet size (1,048,576" in reasons[TOPICS.audit("twin")]
    )
    assert "cannot be decoded" in reasons["outbox"]
    assert len(letters) == 3  # nothing the edge made itself since
    big = next(letter for letter in letters if letter.topic == TOPICS.audit("twin"))
    assert len(big.payload) > 2 * MB  # kept whole
    seeded = [p for t, p in events.messages if p == GOOD_SEED]
    assert len(seeded) == 2
    wait_until(lambda: bool(metrics.messages), 10, "the edge's metrics")
    last = json.loads(metrics.messages[-1][1])["values"]
    assert last["deadlettered"] == 3 and last["replies_redirected"] >= 4
    assert last["spool_depth"] < 100  # nothing stuck in the outbox

    # No reply went anywhere but the requester's own reply topic.
    assert elsewhere.messages == []

    # The twin's good records arrived as they are; the hostile write is a bounded record.
    def twin_events() -> dict[int, Any]:
        decoded = [decode_event(p) for _, p in list(events.messages) if p != GOOD_SEED]
        return {e.seq: e for e in decoded if e.source == "twin" and e.kind == "audit"}

    trail = running.audit()
    wait_until(lambda: set(twin_events()) >= {r.seq for r in trail}, 30, "the twin's audit events")
    by_seq = twin_events()
    good = [r for r in trail if r.user == "operator via edge" and r.accepted]
    assert len(good) == len(answered) and [r.new for r in good] == [
        a.detail["new"] for a in answered
    ]
    for record in trail:
        event = by_seq[record.seq]
        sent = (event.user, event.action, event.target, event.new, event.reason, event.accepted)
        kept = (record.user, record.action, record.target, record.new, record.reason)
        assert sent == (*kept, record.accepted), record
    (write,) = [r for r in trail if r.seq > before_write and r.user == "anonymous"]
    assert not write.accepted and str(write.new).endswith("[cut: 2,097,152 characters]")

    # The edge's own audit events of the hostile requests are bounded too.
    edge_events = [decode_event(p) for _, p in list(events.messages) if p != GOOD_SEED]
    for event in edge_events:
        for text in (event.user, event.action, event.target, event.reason, event.result):
            assert len(text) <= MAX_FIELD_CHARS + 200
    assert any("response topic was not followed" in e.result for e in edge_events)
    assert "disconnected from the broker" not in edge.text()
    assert edge.terminate() == 0


def test_a_restart_with_a_hostile_row_left_in_the_outbox_starts_clean(
    gateway: Gateway,
) -> None:
    """The row that stopped an older edge at every start is set aside at the first start and
    is not met again after a restart."""
    edge = gateway.edge
    edge.start()
    wait_until(lambda: len(_letters(gateway)) == 3, 30, "the dead letters")
    assert edge.terminate() == 0
    edge.start()
    wait_until(lambda: "subscribing to" in edge.text().split("edge stopped")[-1], 30, "a restart")
    operator = Requester(gateway.broker, "operator")
    try:
        reply = operator.call(
            CommandRequest("setpoint", tag="press.fill_depth_sp", value=9.5, reason="after")
        )
    finally:
        operator.close()
    assert reply.accepted, reply
    assert len(_letters(gateway)) == 3 and edge.running


def _letters(gateway: Gateway) -> list[Any]:
    """The edge's dead letters so far (none while its store is being made)."""
    try:
        return read_deadletters(gateway.deadletters)
    except sqlite3.Error:  # no file yet, or its tables not yet committed
        return []
