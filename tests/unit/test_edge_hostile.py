"""The edge against hostile input: replies only on the requester's own reply topic, bounded
replies and audit events, no outbox row that stops the publish loop (it becomes a dead letter,
whole, with its reason), the broker's packet limit, and a dead MQTT thread ends the edge."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import typer
from asyncua import ua
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridge.counters import Counters
from bridge.deadletter import DeadLetterStore, read_deadletters
from bridge.edge.cli import edge as edge_command
from bridge.edge.commands import (
    MAX_COMMAND_BYTES,
    CommandExecutor,
    Incoming,
    Outcome,
    audit_events,
)
from bridge.edge.mqtt import MqttLink, publish_size, unsendable
from bridge.edge.outbox import Message, Outbox
from bridge.edge.service import COMMAND_QUEUE, Edge, EdgeFailedError, registry_for
from bridge.edge.settings import EdgeSettings
from bridge.spool import Spool
from core.payload import CommandReply, CommandRequest, decode_reply
from core.text import MAX_FIELD_CHARS, MAX_REASON_CHARS
from core.topics import SiteTopics

TOPICS = SiteTopics("site1")
MB = 1024 * 1024


# Packet sizes and what can never be sent -------------------------------------------------------
def paho_packet(message: Message) -> bytes:
    """The PUBLISH packet paho builds for `message` (QoS 1), captured instead of sent."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
    )
    sent: list[bytes] = []

    def capture(
        command: int,
        packet: bytes | bytearray,
        mid: int,
        qos: int,
        info: mqtt.MQTTMessageInfo | None = None,
    ) -> MQTTErrorCode:
        sent.append(bytes(packet))
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    client._packet_queue = capture  # type: ignore[method-assign]
    client._sock = object()  # type: ignore[assignment]  # "connected": paho builds the packet
    props = None
    if message.correlation is not None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.CorrelationData = message.correlation
    client._send_publish(1, message.topic.encode(), message.payload, 1, False, False, None, props)
    client._sock = None
    return sent[0]


@pytest.mark.parametrize(
    "message",
    [
        Message("a/b", b""),
        Message(TOPICS.audit("twin"), b"x" * 100),
        Message(TOPICS.reply("operator"), b"{}", correlation=b"c" * 16),
        Message("t" * 200, b"y" * 20_000, correlation=b"z" * 300),
        Message("é/ü", b"p" * 3_000_000),
    ],
)
def test_publish_size_is_the_packet_paho_sends(message: Message) -> None:
    assert publish_size(message) == len(paho_packet(message))


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (Message("pcmm/v1/#", b"{}"), "not a topic one can publish to"),
        (Message("pcmm/v1/+/reply/x", b"{}"), "not a topic one can publish to"),
        (Message("", b"{}"), "not a topic one can publish to"),
        (Message("a\0b", b"{}"), "not a topic one can publish to"),
        (Message("\ud800", b"{}"), "not valid UTF-8"),
        (Message("t" * 70_000, b"{}"), "longer than MQTT allows"),
        (Message("a/b", b"{}", correlation=b"c" * 70_000), "correlation data"),
        (Message("a/b", b"x" * MB), "larger than the broker's maximum packet size"),
    ],
)
def test_what_the_broker_can_never_take_is_named(message: Message, why: str) -> None:
    reason = unsendable(message, MB)
    assert reason is not None and why in reason and len(reason) < 300


def test_a_message_of_exactly_the_limit_is_sent() -> None:
    message = Message("a/b", b"x" * 1000)
    assert unsendable(message, publish_size(message)) is None
    assert unsendable(message, publish_size(message) - 1) is not None


# The publish loop ------------------------------------------------------------------------------
class Link:
    """A MqttLink over a real (unconnected) paho client, a real outbox and dead-letter store."""

    def __init__(self, folder: Path, **overrides: Any) -> None:
        self.settings = EdgeSettings(spool_path=folder / "edge.spool.sqlite", **overrides)
        self.outbox = Outbox(Spool(self.settings.spool_path, synchronous="NORMAL"))
        self.deadletters = DeadLetterStore(self.settings.deadletters, synchronous="NORMAL")
        self.counters = Counters()
        self.link = MqttLink(
            self.settings, self.outbox, self.counters, lambda *a: None, self.deadletters
        )
        self.published: list[str] = []
        publish = self.link.client.publish

        def record(
            topic: str, payload: mqtt.PayloadType = None, *args: Any, **kwargs: Any
        ) -> mqtt.MQTTMessageInfo:
            info = publish(topic, payload, *args, **kwargs)  # paho's own checks run
            self.published.append(topic)
            return info

        self.link.client.publish = record  # type: ignore[method-assign]

    def drain(self) -> None:
        self.link._drain()
        self.link._flush_acks()

    def close(self) -> None:
        self.outbox.spool.close()
        self.deadletters.close()


def test_rows_the_broker_can_never_take_become_dead_letters_and_the_rest_is_sent(
    tmp_path: Path,
) -> None:
    link = Link(tmp_path)
    good = [Message(TOPICS.audit("twin"), b'{"n":%d}' % i) for i in range(3)]
    hostile = [
        Message("pcmm/v1/#", b'{"reply":1}', correlation=b"c"),  # an old edge's reply row
        Message(TOPICS.audit("twin"), b"a" * (2 * MB)),  # larger than the broker takes
    ]
    link.outbox.put([good[0], hostile[0], good[1], hostile[1], good[2]])
    link.outbox.spool.put_many([b"\xff not a row"])  # a row nobody can decode
    link.drain()
    assert link.published == [m.topic for m in good]
    assert link.outbox.depth == 3  # the good ones, in flight (no PUBACK without a broker)
    letters = read_deadletters(link.settings.deadletters)
    assert [(letter.topic, letter.payload) for letter in letters] == [
        ("pcmm/v1/#", b'{"reply":1}'),
        (TOPICS.audit("twin"), b"a" * (2 * MB)),  # kept whole
        ("outbox", b"\xff not a row"),
    ]
    assert "not a topic one can publish to" in letters[0].reason
    assert "larger than the broker's maximum packet size (1,048,576 bytes)" in letters[1].reason
    assert "cannot be decoded" in letters[2].reason
    assert all(letter.service == "edge" for letter in letters)
    assert link.counters.get("deadlettered") == 3
    link.close()


def test_a_row_paho_raises_on_is_a_dead_letter_and_the_loop_goes_on(tmp_path: Path) -> None:
    link = Link(tmp_path)
    record = link.link.client.publish

    def publish(
        topic: str, payload: mqtt.PayloadType = None, *args: Any, **kwargs: Any
    ) -> mqtt.MQTTMessageInfo:
        if payload == b"boom":
            raise RuntimeError("something paho did not like")
        return record(topic, payload, *args, **kwargs)

    link.link.client.publish = publish  # type: ignore[method-assign]
    link.outbox.put([Message("a/b", b"boom"), Message("a/c", b"fine")])
    link.drain()
    assert link.published == ["a/c"]
    (letter,) = read_deadletters(link.settings.deadletters)
    assert letter.reason == "paho refused it: RuntimeError: something paho did not like"
    link.close()


def test_the_brokers_maximum_packet_size_is_taken_from_its_connack(tmp_path: Path) -> None:
    link = Link(tmp_path, mqtt_max_packet_size=2 * MB)
    client = link.link.client
    link.link._on_connect(client, None, None)  # type: ignore[arg-type]
    assert link.link.max_packet == 2 * MB  # the broker said nothing: the setting
    props = Properties(PacketTypes.CONNACK)  # type: ignore[no-untyped-call]
    props.MaximumPacketSize = 4096
    link.link._on_connect(client, None, props)  # type: ignore[arg-type]
    assert link.link.max_packet == 4096
    link.published.clear()  # the online status each CONNACK sends
    link.outbox.put([Message("a/b", b"x" * 5000), Message("a/b", b"y" * 100)])
    link.drain()
    assert link.published == ["a/b"] and link.counters.get("deadlettered") == 1
    link.close()


# Commands --------------------------------------------------------------------------------------
class FakeOpcUa:
    """An OPC UA source whose WriteSetpoint accepts (and records) every call (a stand-in: these
    tests are about the edge's handling of the MQTT request, before any server is asked)."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.connected.set()
        self.namespace = 2
        self.calls: list[list[Any]] = []
        self.client = self
        self.uaclient = self

    async def call(self, requests: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
        (request,) = requests
        self.calls.append([v.Value for v in request.InputArguments])
        outputs = [ua.Variant("9.0", ua.VariantType.String), ua.Variant("9.5")]
        outputs[1] = ua.Variant(json.dumps(request.InputArguments[1].Value))
        return [ua.CallMethodResult(OutputArguments=outputs)]

    async def eu_range(self, client: object, tag: str) -> tuple[float, float] | None:
        return None  # no EURange: the registry's range holds


def execute(payload: bytes, response_topic: str | None, kind: str = "setpoint") -> Outcome:
    source = FakeOpcUa()
    executor = CommandExecutor("site1", registry_for(EdgeSettings()), source)  # type: ignore[arg-type]
    topic = TOPICS.command("setpoint", "operator")
    incoming = Incoming.received(topic, payload, response_topic, b"id")
    outcome = asyncio.run(executor.execute(incoming, TOPICS.reply("operator"), "operator", kind))
    execute.calls = source.calls  # type: ignore[attr-defined]
    return outcome


SETPOINT = json.dumps(
    {"v": 1, "kind": "setpoint", "tag": "press.fill_depth_sp", "value": 9.5, "reason": "trim"}
).encode()


@pytest.mark.parametrize(
    "response_topic",
    [
        "pcmm/v1/#",
        "pcmm/v1/site1/reply/controller",  # another user's answers
        "pcmm/v1/site1/events/audit",
        "x" * 60_000,
        "",
    ],
)
def test_a_reply_goes_only_to_the_requesters_own_reply_topic(response_topic: str) -> None:
    outcome = execute(SETPOINT, response_topic)
    assert outcome.reply.accepted, outcome.reply
    assert outcome.response_topic == "pcmm/v1/site1/reply/operator"
    assert outcome.correlation == b"id"
    assert outcome.redirected == (response_topic != "")  # "" is "none", not another topic
    received = audit_events("site1", outcome, 1, 0)[0]
    assert ("not followed" in received.result) == outcome.redirected


def test_the_requesters_own_reply_topic_is_followed() -> None:
    outcome = execute(SETPOINT, "pcmm/v1/site1/reply/operator")
    assert not outcome.redirected and outcome.response_topic.endswith("/reply/operator")


def test_an_over_long_reason_is_refused_not_cut_and_audited_bounded() -> None:
    body = json.loads(SETPOINT)
    body["reason"] = "r" * (MAX_REASON_CHARS + 1)
    outcome = execute(json.dumps(body).encode(), None)
    assert (outcome.reply.accepted, outcome.reply.code) == (False, "invalid")
    assert "reason is 1,001 characters long; at most 1000" in outcome.reply.reason
    assert execute.calls == []  # type: ignore[attr-defined]  # never reached the plant
    body["reason"] = "r" * MAX_REASON_CHARS
    assert execute(json.dumps(body).encode(), None).reply.accepted
    body["reason"] = "r" * 20_000
    events = audit_events("site1", execute(json.dumps(body).encode(), None), 7, 0)
    for event in events:
        assert len(event.reason) <= MAX_FIELD_CHARS + 40 and event.reason.endswith("characters]")


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "setpoint"),  # nested too deeply
        (
            b'{"v":1,"kind":"setpoint","tag":"press.fill_depth_sp","value":' + b"9" * 5000 + b"}",
            "setpoint",
        ),
        (
            b'{"v":1,"kind":"setpoint","tag":"press.fill_depth_sp","value":1' + b"0" * 400 + b"}",
            "setpoint",
        ),
        (b'{"v":1,"kind":"setpoint","tag":"press.fill_depth_sp","value":1e999}', "setpoint"),
        (b"\xff\xfe\x00 not utf-8", "setpoint"),
        (b'{"v":1,"kind":"setpoint","tag":["press"],"value":9}', "setpoint"),
        (b'{"v":1,"kind":"setpoint","tag":"' + b"t" * MB + b'","value":9}', "setpoint"),
        (
            b'{"v":1,"kind":"setpoint","tag":"diverter.position_sp","value":"' + b"s" * MB + b'"}',
            "setpoint",
        ),
        (b'{"v":1,"kind":"line","action":"start"}', "k" * 60_000),
        (b'{"v":1,"kind":"fault","action":"inject","fault":"' + b"f" * MB + b'"}', "fault"),
    ],
)
def test_hostile_payloads_are_refused_with_a_bounded_reply_and_bounded_audit_events(
    payload: bytes, kind: str
) -> None:
    outcome = execute(payload, "pcmm/v1/#", kind)
    reply = outcome.reply
    assert not reply.accepted and reply.code in ("invalid", "range", "unknown_tag", "type"), reply
    assert len(reply.reason) <= MAX_FIELD_CHARS + 40
    encoded = json.dumps(
        {"v": 1, "accepted": False, "code": reply.code, "reason": reply.reason, "time_ns": 0}
    ).encode()
    assert decode_reply(encoded).reason == reply.reason
    for event in audit_events("site1", outcome, 1, 0):
        for text in (event.user, event.action, event.target, event.reason, event.result):
            assert len(text) <= MAX_FIELD_CHARS + 200
        assert not isinstance(event.new, str) or len(event.new) <= MAX_FIELD_CHARS + 40


def test_audit_events_of_a_command_are_keyword_built_and_bounded() -> None:
    request = CommandRequest("setpoint", tag="press.fill_depth_sp", value="v" * MB, reason="why")
    reply = CommandReply(False, "range", "x" * MB, 5)
    outcome = Outcome("operator", "setpoint", request, reply, TOPICS.reply("operator"), None)
    received, result = audit_events("site1", outcome, 3, 4)
    assert (received.seq, received.time_ns, received.result) == (3, 4, "received")
    assert (result.seq, result.time_ns, result.accepted) == (4, 5, False)
    assert result.result.startswith("range: xxx") and len(result.result) < MAX_FIELD_CHARS + 40
    assert isinstance(result.new, str) and len(result.new) < MAX_FIELD_CHARS + 40


# A dead MQTT thread ends the edge ----------------------------------------------------------------
def test_a_dead_mqtt_thread_ends_the_edge_with_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def die(self: MqttLink, stop: threading.Event) -> None:
        raise RuntimeError("a bug in the publish loop")

    monkeypatch.setattr(MqttLink, "run", die)
    settings = EdgeSettings(
        spool_path=tmp_path / "edge.spool.sqlite",
        opcua_url="opc.tcp://127.0.0.1:9/none",
        spool_synchronous="NORMAL",
    )
    edge = Edge(settings)

    async def main() -> None:
        async with asyncio.timeout(20):
            await edge.run(asyncio.Event())

    with pytest.raises(EdgeFailedError, match="a bug in the publish loop"):
        asyncio.run(main())


def test_a_command_too_large_to_be_one_is_refused_unread() -> None:
    incoming = Incoming.received("t", b"x" * (MAX_COMMAND_BYTES + 1), None, None)
    assert (incoming.payload, incoming.size) == (b"", MAX_COMMAND_BYTES + 1)
    outcome = execute(b'{"v":1,"kind":"setpoint","reason":"' + b"r" * MB + b'"}', None)
    assert outcome.reply.code == "invalid" and "at most 65,536" in outcome.reply.reason


def test_commands_beyond_the_queue_are_dropped_and_counted(tmp_path: Path) -> None:
    edge = Edge(EdgeSettings(spool_path=tmp_path / "edge.spool.sqlite", spool_synchronous="NORMAL"))
    incoming = Incoming.received(TOPICS.command("line", "operator"), b"{}", None, None)
    for _ in range(COMMAND_QUEUE + 5):
        edge._enqueue(incoming)
    assert edge._commands.qsize() == COMMAND_QUEUE
    assert edge.counters.get("commands_dropped") == 5
    edge.spool.close()
    edge.deadletters.close()


# A packet the edge cannot read --------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = b""
    while True:
        n, digit = divmod(n, 128)
        out += bytes([digit | (0x80 if n else 0)])
        if not n:
            return out


class RogueBroker:
    """Accepts MQTT connections, answers CONNACK, then sends a PUBLISH whose MQTT 5 response
    topic is not UTF-8 (Mosquitto never forwards one; a broken broker might)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        topic = TOPICS.command("setpoint", "operator").encode()
        props = b"\x08" + struct.pack("!H", 2) + b"\xff\xfe"  # ResponseTopic, invalid UTF-8
        body = struct.pack("!H", len(topic)) + topic + _varint(len(props)) + props + b"{}"
        while True:
            conn, _ = self.server.accept()
            self.connections += 1
            conn.recv(4096)  # CONNECT
            conn.sendall(b"\x20\x03\x00\x00\x00")  # CONNACK: success, no properties
            conn.sendall(b"\x30" + _varint(len(body)) + body)


def test_a_packet_the_edge_cannot_read_is_a_lost_connection_not_a_dead_thread(
    tmp_path: Path,
) -> None:
    broker = RogueBroker()
    link = Link(tmp_path, mqtt_host="127.0.0.1", mqtt_port=broker.port, retry_initial_s=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=link.link.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while broker.connections < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert broker.connections >= 3 and thread.is_alive()  # it dropped it and came back
    finally:
        stop.set()
        thread.join(10)
    link.close()


def test_a_broker_slow_to_acknowledge_the_connection_is_waited_for(tmp_path: Path) -> None:
    """The CONNACK of a broker across a network takes more than one 5 ms poll: the edge must
    wait for it, not open a new connection at every poll (and so never be connected)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def serve() -> None:
        while True:
            conn, _ = server.accept()
            accepted.append(conn)
            conn.recv(4096)
            time.sleep(0.2)  # a slow network
            conn.sendall(b"\x20\x03\x00\x00\x00")

    threading.Thread(target=serve, daemon=True).start()
    port = server.getsockname()[1]
    link = Link(tmp_path, mqtt_host="127.0.0.1", mqtt_port=port)
    stop = threading.Event()
    thread = threading.Thread(target=link.link.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not link.link.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert link.link.connected and len(accepted) == 1
    finally:
        stop.set()
        thread.join(10)
    link.close()


def test_the_edge_command_exits_non_zero_when_its_mqtt_thread_died(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def died(self: Edge, stop: asyncio.Event) -> None:
        raise EdgeFailedError("the MQTT thread died: RuntimeError('boom')")

    monkeypatch.setattr(Edge, "run", died)
    monkeypatch.setenv("PLANT_EDGE_SPOOL_PATH", str(tmp_path / "edge.spool.sqlite"))
    with pytest.raises(typer.Exit) as stopped:
        edge_command()
    assert stopped.value.exit_code == 1
    assert "the MQTT thread died" in capsys.readouterr().err
