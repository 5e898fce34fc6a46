"""The MQTT side of the edge: drain the outbox with QoS 1, receive commands, say online/offline.

One thread runs the explicit loop of `bridge.mqtt_session.MqttSession`: connect (capped
backoff while the broker is away), then alternate its network poll with draining the outbox.
Publishing follows Telegraf's RunningOutput, with the broker as the sink:

- rows are published oldest first, at most `max_inflight` awaiting their PUBACK;
- a row is deleted from the outbox only in `on_publish`, i.e. after the broker's PUBACK, so a
  SIGKILL before that replays it (a duplicate, never a loss);
- after a lost connection paho itself resends its unacknowledged messages, in order, on the
  next connection, and this loop publishes nothing new until it is connected again, so the
  order on the wire is the order of the outbox.

The session starts clean: commands sent while the edge was away are not queued for it, because
a setpoint carried out minutes late is worse than one refused (the requester times out and asks
again). The retained status topic says `online` after each connection and `offline` through the
Last Will when the edge dies, or on a clean stop.

No row stops the loop. Before a row is handed to paho it is checked: it must decode, its topic
must be a valid publish topic (no wildcard, no NUL, at most 65,535 bytes of UTF-8), and its
PUBLISH packet must fit the broker's maximum packet size (the CONNACK's Maximum Packet Size;
`mqtt_max_packet_size` when the broker states none). A broker disconnects a client that sends
a larger packet, and the row would be sent again after every reconnect, forever, with the
outbox filling behind it. A row that fails a check, or on which paho raises, is set aside
whole with the reason (a dead letter in `bridge.deadletter.DeadLetterStore`, committed before
the row leaves the outbox), counted and logged, and the loop goes on.
Any other error ends `run`: the service then stops the process with a non-zero exit, so that
its supervisor restarts it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge.counters import Counters
from bridge.deadletter import DeadLetterStore
from bridge.edge.outbox import Message, Outbox
from bridge.edge.settings import EdgeSettings
from bridge.mqtt_session import MqttConfig, MqttSession
from core.text import clip, shown
from core.topics import SiteTopics

SERVICE = "edge"
LOOP_TIMEOUT_S = 0.005  # how long one network poll may wait: bounds the publish latency
MAX_TOPIC_BYTES = 65_535  # an MQTT string: a two-byte length
MAX_CORRELATION_BYTES = 65_535  # MQTT 5 binary data: a two-byte length
OUTBOX_TOPIC = "outbox"  # the dead letter's topic for a row that cannot be decoded (kept whole)


def _varint_size(n: int) -> int:
    """Bytes of an MQTT variable byte integer."""
    return 1 if n < 128 else 2 if n < 16_384 else 3 if n < 2_097_152 else 4


def publish_size(message: Message) -> int:
    """Bytes of the MQTT 5 PUBLISH packet (QoS 1) that carries `message`, headers included.

    Fixed header, topic (two-byte length), packet id, properties (only CorrelationData:
    identifier, two-byte length, data) and payload, as paho packs them.
    """
    props = 0 if message.correlation is None else 1 + 2 + len(message.correlation)
    topic = len(message.topic.encode("utf-8"))
    remaining = 2 + topic + 2 + _varint_size(props) + props + len(message.payload)
    return 1 + _varint_size(remaining) + remaining


def unsendable(message: Message, max_packet: int) -> str | None:
    """Why the broker can never take `message` (a reason for its dead letter), or None."""
    topic = message.topic
    try:
        encoded = topic.encode("utf-8")
    except UnicodeError:
        return f"topic {shown(topic)} is not valid UTF-8"
    if not topic or "+" in topic or "#" in topic or "\0" in topic:
        return f"{shown(topic)} is not a topic one can publish to (empty, a wildcard or a NUL)"
    if len(encoded) > MAX_TOPIC_BYTES:
        return f"topic of {len(encoded):,} bytes is longer than MQTT allows ({MAX_TOPIC_BYTES:,})"
    if message.correlation is not None and len(message.correlation) > MAX_CORRELATION_BYTES:
        return f"correlation data of {len(message.correlation):,} bytes is longer than MQTT allows"
    size = publish_size(message)
    if size > max_packet:
        return (
            f"PUBLISH of {size:,} bytes is larger than the broker's maximum packet size "
            f"({max_packet:,} bytes)"
        )
    return None


#: Called on the MQTT thread with (topic, payload, response topic, correlation data).
CommandCallback = Callable[[str, bytes, str | None, bytes | None], None]


class MqttLink:
    """The edge's MQTT client; `run` it on its own thread."""

    def __init__(
        self,
        settings: EdgeSettings,
        outbox: Outbox,
        counters: Counters,
        on_command: CommandCallback,
        deadletters: DeadLetterStore,
    ) -> None:
        self._settings = settings
        self._outbox = outbox
        self._counters = counters
        self._on_command = on_command
        self._deadletters = deadletters
        #: The largest packet the broker takes: its CONNACK's, else the setting.
        self.max_packet = settings.mqtt_max_packet_size
        self._topics = SiteTopics(settings.site_id)
        self.status_topic = self._topics.status(SERVICE)
        # mid -> (row id, publish time, message)
        self._inflight: dict[int, tuple[int, float, Message]] = {}
        # What the broker acknowledged lately, for the replay after a reconnect.
        self._recent: deque[tuple[float, Message]] = deque()
        self._ever_connected = False
        self._replays: list[float] = []  # monotonic times of the replays still due
        self._last_sent = 0  # highest row id handed to paho
        self._acked: list[int] = []
        self._log = logging.getLogger("bridge.edge.mqtt")
        self.session = MqttSession(
            MqttConfig.of(settings),
            log=self._log,
            status_topic=self.status_topic,
            counters=counters,
            max_inflight=settings.max_inflight,
            # paho's own queue must never refuse: the outbox already bounds what is pending.
            max_queued=0,
        )
        self.session.on_connect = self._on_connect
        self.client = self.session.client
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

    @property
    def connected(self) -> bool:
        return self.session.connected

    # paho callbacks, on the thread running `run` ---------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, flags: mqtt.ConnectFlags, properties: Properties | None
    ) -> None:
        """After each CONNACK the broker accepted (the session then says `online`)."""
        stated = getattr(properties, "MaximumPacketSize", None) if properties else None
        if isinstance(stated, int) and stated > 0:
            self.max_packet, source = stated, "the broker's limit"
        else:
            self.max_packet, source = self._settings.mqtt_max_packet_size, "mqtt_max_packet_size"
        self._log.info(
            "connected to %s:%d (packets of at most %d bytes, %s)",
            self._settings.mqtt_host,
            self._settings.mqtt_port,
            self.max_packet,
            source,
        )
        if self._ever_connected and self._settings.replay_window_s > 0:
            now = time.monotonic()
            self._replays = sorted(now + delay for delay in self._settings.replay_after_s)
        self._ever_connected = True
        client.subscribe(self._topics.all_commands, options=SubscribeOptions(qos=1))

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return  # the status message, which is not an outbox row
        row_id, sent, message = entry
        if not reason.is_failure and message.correlation is None and not message.retain:
            self._recent.append((time.monotonic(), message))
        if reason.is_failure:
            # The broker will not take it (e.g. not authorised); retrying cannot help.
            self._counters.add("rejected")
            self._log.warning("broker refused an outbox message: %s", reason)
        self._acked.append(row_id)
        self._counters.add("acked")
        self._counters.set("puback_ms", (time.monotonic() - sent) * 1000.0)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties
        response = getattr(props, "ResponseTopic", None) if props is not None else None
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        self._on_command(msg.topic, bytes(msg.payload), response, correlation)

    # the loop --------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Connect, publish and receive until `stop`; reconnect with capped backoff."""
        self.session.run(stop, self)
        self._flush_acks()

    def poll_timeout(self) -> float:
        return LOOP_TIMEOUT_S

    def after_poll(self, ok: bool) -> None:
        """After each network poll: settle the acknowledged rows, then publish more."""
        self._flush_acks()
        if ok and self.session.connected:
            self._replay()
            self._drain()

    def _drain(self) -> None:
        """Publish the rows after the last one handed to paho, up to the in-flight window."""
        room = self._settings.max_inflight - len(self._inflight)
        if room <= 0 or self._outbox.depth <= len(self._inflight):
            return
        # The oldest rows are the ones in flight; the new ones follow them.
        rows = self._outbox.peek_rows(len(self._inflight) + room)
        now = time.monotonic()
        for row_id, row in rows:
            if row_id <= self._last_sent:
                continue
            self._last_sent = row_id
            try:
                message = Message.decode(row)
            except Exception as error:  # a row this version cannot read: never publishable
                why = f"outbox row cannot be decoded: {error!r}"
                self._dead_letter(row_id, why, OUTBOX_TOPIC, row)
                continue
            refused = unsendable(message, self.max_packet)
            if refused is not None:
                self._dead_letter(row_id, refused, message.topic, message.payload)
                continue
            try:
                info = self._publish(message)
            except Exception as error:  # paho refused it: it would refuse it again, forever
                why = f"paho refused it: {type(error).__name__}: {error}"
                self._dead_letter(row_id, why, message.topic, message.payload)
                continue
            self._inflight[info.mid] = (row_id, now, message)
            self._counters.add("published")

    def _publish(self, message: Message) -> mqtt.MQTTMessageInfo:
        props = None
        if message.correlation is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.CorrelationData = message.correlation
        return self.client.publish(
            message.topic, message.payload, qos=1, retain=message.retain, properties=props
        )

    def _dead_letter(self, row_id: int, reason: str, topic: str, payload: bytes) -> None:
        """Set a row aside for good (durably first, then out of the outbox) and go on."""
        reason = clip(reason, 500)
        (letter_id,) = self._deadletters.add_many([(reason, topic, payload)], SERVICE)
        self._acked.append(row_id)
        self._counters.add("deadlettered")
        self._log.warning(
            "outbox row %d (%s, %d bytes) set aside as dead letter %d: %s",
            row_id,
            shown(topic),
            len(payload),
            letter_id,
            reason,
        )

    def _replay(self) -> None:
        """After a reconnect, publish again (on schedule) what the broker acknowledged lately."""
        window = self._settings.replay_window_s
        horizon = time.monotonic() - window
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
        if not self._replays or time.monotonic() < self._replays[0]:
            return
        self._replays.pop(0)
        for _, message in self._recent:
            # Not tracked as in flight: these rows left the outbox already.
            self.client.publish(message.topic, message.payload, qos=1)
        self._counters.add("replayed", len(self._recent))
        if self._recent:
            self._log.info("replayed %d messages of the last %.0f s", len(self._recent), window)

    def _flush_acks(self) -> None:
        if self._acked:
            acked, self._acked = self._acked, []
            self._outbox.ack(acked)

    def close(self) -> None:
        """Say offline (retained) and disconnect cleanly."""
        self.session.close()
