"""MQTT clients for tests: connect as a broker user, collect messages, publish through an outbox.

`OutboxPublisher` is the pattern the edge gateway's outbox follows: every message is first put
in a `bridge.spool.Spool`, a pump publishes it at QoS 1, and it leaves the spool only when the
broker's PUBACK arrives. Across a broker outage nothing is lost (paho re-sends in-flight
messages after reconnecting; anything unacknowledged for too long is published again), and
across a crash of the publisher the spool replays. Duplicates are possible, loss is not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from bridge.spool import Spool
from testkit.servers import Mosquitto


def wait_until(check: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    """Poll `check` until true; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def client(
    broker: Mosquitto,
    user: str | None,
    client_id: str = "",
    *,
    password: str | None = None,
    connect: bool = True,
) -> mqtt.Client:
    """A started MQTT 5 client logged in as `user` (None: anonymous), connected if it can."""
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    if user is not None:
        c.username_pw_set(user, password if password is not None else broker.passwords[user])
    if connect:
        c.connect(broker.host, broker.port, keepalive=10)
        c.loop_start()
        wait_until(c.is_connected, 10, f"{user} to connect")
    return c


def connect_reason(broker: Mosquitto, user: str | None, password: str | None = None) -> str:
    """Connect and return the CONNACK reason ('Success', 'Not authorized', ...)."""
    c = client(broker, user, password=password, connect=False)
    reasons: list[ReasonCode] = []
    c.on_connect = lambda cl, ud, flags, reason, props: reasons.append(reason)
    c.connect(broker.host, broker.port, keepalive=10)
    c.loop_start()
    try:
        wait_until(lambda: bool(reasons), 10, "CONNACK")
    finally:
        c.disconnect()
        c.loop_stop()
    return str(reasons[0])


def session_present(broker: Mosquitto, user: str, client_id: str) -> bool:
    """Whether the broker holds a session for `client_id`; asked with a session expiry of 0,
    so the look leaves none behind (it takes over and ends one that was there)."""
    found: list[bool] = []
    c = client(broker, user, client_id, connect=False)
    c.on_connect = lambda cl, ud, flags, reason, props: found.append(flags.session_present)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    c.connect(broker.host, broker.port, clean_start=False, properties=props)
    c.loop_start()
    try:
        wait_until(lambda: bool(found), 10, f"a CONNACK for {client_id}")
    finally:
        c.disconnect()
        c.loop_stop()
    return found[0]


@dataclass
class Collector:
    """Subscribes and keeps every message (topic, payload)."""

    client: mqtt.Client
    messages: list[tuple[str, bytes]] = field(default_factory=list)

    def payloads(self) -> list[bytes]:
        return [payload for _, payload in list(self.messages)]


def collect(broker: Mosquitto, user: str, topic_filter: str) -> Collector:
    c = client(broker, user)
    collector = Collector(c)
    done = threading.Event()
    c.on_message = lambda cl, ud, msg: collector.messages.append((msg.topic, bytes(msg.payload)))
    c.on_subscribe = lambda cl, ud, mid, codes, props: done.set()
    c.subscribe(topic_filter, qos=1)
    assert done.wait(10), "no SUBACK"
    return collector


def publish_and_wait(c: mqtt.Client, topic: str, payload: bytes) -> None:
    """Publish at QoS 1 and wait for the PUBACK (a denied publish is acknowledged too)."""
    info = c.publish(topic, payload, qos=1)
    info.wait_for_publish(timeout=10)
    assert info.is_published()


def _frame(topic: str, payload: bytes) -> bytes:
    return topic.encode() + b"\0" + payload


class OutboxPublisher:
    """Publishes at QoS 1 from a durable outbox (a Spool); see the module docstring."""

    WINDOW = 200  # messages in flight at most
    REPUBLISH_S = 15.0  # unacknowledged this long: publish again

    def __init__(self, broker: Mosquitto, user: str, spool_path: Path, client_id: str) -> None:
        self.broker = broker
        self.outbox = Spool(spool_path)
        self.republished = 0
        self._inflight: dict[int, tuple[int, float]] = {}  # spool id -> (mid, sent at)
        self._by_mid: dict[int, int] = {}
        self._acked: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.username_pw_set(user, broker.passwords[user])
        self._client.on_publish = self._on_publish
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self._client.connect_async(
            broker.host, broker.port, keepalive=5, clean_start=False, properties=props
        )
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()

    def publish(self, topic: str, payload: bytes) -> None:
        """Durably queue one message."""
        self.outbox.put_many([_frame(topic, payload)])

    def publish_many(self, messages: list[tuple[str, bytes]]) -> None:
        self.outbox.put_many([_frame(t, p) for t, p in messages])

    @property
    def pending(self) -> int:
        return self.outbox.depth

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        with self._lock:
            spool_id = self._by_mid.pop(mid, None)
            if spool_id is not None:
                self._inflight.pop(spool_id, None)
                self._acked.append(spool_id)

    def _run(self) -> None:
        socket_open = False  # from reconnect() until loop() reports the connection lost
        while not self._stop.is_set():
            if not socket_open:
                try:
                    self._client.reconnect()
                    socket_open = True
                except OSError:
                    self._stop.wait(0.2)
                    continue
            if self._client.loop(timeout=0.01) is not MQTTErrorCode.MQTT_ERR_SUCCESS:
                socket_open = False
                self._stop.wait(0.2)
                continue
            with self._lock:
                acked, self._acked = self._acked, []
            self.outbox.ack(acked)
            if self._client.is_connected():
                self._pump()

    def _pump(self) -> None:
        now = time.monotonic()
        with self._lock:
            room = self.WINDOW - len(self._inflight)
        if room <= 0:
            return
        for spool_id, frame in self.outbox.peek(self.WINDOW):
            with self._lock:
                sent = self._inflight.get(spool_id)
                if sent is not None and now - sent[1] < self.REPUBLISH_S:
                    continue
            topic, _, payload = frame.partition(b"\0")
            info = self._client.publish(topic.decode(), payload, qos=1)
            if info.rc is not MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            with self._lock:
                if sent is not None:
                    self.republished += 1
                self._inflight[spool_id] = (info.mid, now)
                self._by_mid[info.mid] = spool_id
                room -= 1
            if room <= 0:
                return

    def drain(self, timeout: float) -> None:
        """Wait until the broker acknowledged everything queued."""
        wait_until(lambda: self.outbox.depth == 0, timeout, "the outbox to drain")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._client.disconnect()
        self.outbox.close()
