"""MQTT in: receive, validate, convert, spool, and only then acknowledge.

The client uses MQTT 5 with a fixed client id, ``clean_start=False`` and a session expiry, so
the broker keeps the subscriptions and queues messages while the historian is away, and it
acknowledges by hand (``manual_ack=True``): a PUBACK is sent only after the message's points
are committed to the spool. A message received but not yet committed when the process dies
was not acknowledged, so the broker sends it again; one committed but not yet acknowledged is
sent again too, and written twice to the same point (idempotent).

Received messages are committed in groups so that the spool's fsync is paid per group: a
group ends when the socket has nothing more to read (the sender's burst is over), when
COMMIT_MAX messages wait, or `commit_interval_s` after its first message, whichever is first.
Messages arriving during a commit wait in the socket and form the next group, so groups grow
with the load.

Each message is converted on its own: one that `convert` refuses, or that makes it raise
anything at all, becomes a dead letter with the reason and takes nothing else with it. Dead
letters are committed to the `DeadLetterStore` (whole) before the group's points go to the
spool and before anything is acknowledged: the broker forgets an invalid message only once
its dead letter is on disk. They are then announced on `pcmm/v1/deadletter/historian` from the
store (`_announce`), at QoS 1, and marked published only when the broker's PUBACK arrives. A
failure of the store or the spool (a full disk) is not a message's fault: it propagates and
stops the historian, with nothing of the group acknowledged.

With a shared subscription each historian runs a second `MqttIngest`, the witness: plain
subscriptions to the same filters on a session of its own, kept only while the shared one may
be missing on the broker (after a broker restart); `coverage.py` says why and how.

With `takeover_peers`, the main session also watches those peers' retained status, and a
third kind of `MqttIngest` borrows a dead peer's session (its client id) for as long as it
takes to drain its queue through the same path, then ends it; `takeover.py` says why and how.

The network loop is `bridge.mqtt_session.MqttSession`'s explicit one: connect, poll, and on a
lost connection wait with capped backoff and reconnect; only changes of state are logged. Its
turn (`poll_timeout`, `after_poll`) is where groups are committed and dead letters announced.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge.counters import Counters
from bridge.deadletter import DeadLetterStore
from bridge.historian.coverage import Coverage
from bridge.historian.settings import HistorianSettings
from bridge.historian.takeover import Peer, PeerWatch
from bridge.mqtt_session import MqttConfig, MqttSession
from bridge.spool import Spool
from core import topics
from core.payload import PayloadError

SERVICE = "historian"
FILTERS = (topics.ALL_TELEMETRY, topics.ALL_TRUTH, topics.ALL_EVENTS, topics.ALL_METRICS)
COMMIT_MAX = 500  # messages per spool commit at most
COMMIT_MAX_BYTES = 16 * 1024 * 1024  # payload bytes held for one commit at most (memory)
ANNOUNCE_WINDOW = 50  # dead-letter announcements in flight at most
# Room left in a packet for the fixed header, topic and properties of an announcement.
PACKET_OVERHEAD = 1024
# A takeover publishes its drain marker again when nothing arrived for this long after it
# (a marker the broker dropped, e.g. a full queue, must not leave the takeover waiting).
MARKER_RETRY_S = 5.0

Convert = Callable[[str, bytes], list[bytes]]


def witness_client_id(client_id: str) -> str:
    """The witness's session: the historian's client id and a suffix (both persistent)."""
    return f"{client_id}-witness"


def _historians_own(topic: str) -> bool:
    """A historian's status or sync topic (`pcmm/v1/<site>/status|sync/historian`): a peer's
    status (watched, or watched once and still in the persistent session), a takeover's
    marker, or in a taken-over session the peer's own watch; never data."""
    levels = topic.split("/")
    return len(levels) == 5 and levels[3] in ("status", "sync") and levels[4] == SERVICE


@dataclass(frozen=True, slots=True)
class _Received:
    topic: str
    payload: bytes
    mid: int
    qos: int


@dataclass(slots=True)
class _Announcing:
    """Dead-letter announcements in flight: MQTT message id -> store id, and what is confirmed."""

    by_mid: dict[int, int] = field(default_factory=dict)
    confirmed: list[int] = field(default_factory=list)
    last_id: int = 0  # the newest store id published on this connection


class MqttIngest:
    """The historian's MQTT consumer; `run` it on its own thread.

    `coverage`: the gate shared with the witness (None: no witness, as with a plain
    subscription). `witness`: this is the witness session (client id `<id>-witness`, plain
    subscriptions, no status; its counters are named `witness_*`). `watch`: the peers whose
    status the main session follows for the takeover. `takeover`: this session is that
    peer's, borrowed to drain it (one connection, no status; counters `takeover_*`).
    """

    def __init__(
        self,
        settings: HistorianSettings,
        spool: Spool,
        convert: Convert,
        counters: Counters,
        deadletters: DeadLetterStore,
        on_spooled: Callable[[], None] = lambda: None,
        *,
        coverage: Coverage | None = None,
        witness: bool = False,
        watch: PeerWatch | None = None,
        takeover: Peer | None = None,
    ) -> None:
        if witness and coverage is None:
            raise ValueError("a witness needs the coverage it shares with the main session")
        if takeover is not None and (witness or coverage is not None or watch is not None):
            raise ValueError("a takeover is a session of its own: no witness, no watch")
        self._coverage = coverage
        self._witness = witness
        self._watch = watch
        self._takeover = takeover
        self._prefix = "witness_" if witness else "takeover_" if takeover else ""
        self._sync_topic = topics.SiteTopics(settings.site_id).sync(SERVICE)
        self._settings = settings
        self._spool = spool
        self._convert = convert
        self._counters = counters
        self._deadletters = deadletters
        self._on_spooled = on_spooled
        self._pending: list[_Received] = []
        self._pending_bytes = 0
        self._first_pending = 0.0
        self._announcing = _Announcing()
        self._letters_added = threading.Event()  # set by any thread that stores a letter
        self._letters_added.set()  # letters of an earlier run may wait
        self._max_packet: int | None = None  # the broker's Maximum Packet Size, if it said
        self._refused = False  # a dead-letter announcement was refused (logged once)
        self._waiting = 0  # messages of the open group before the current poll
        self._log = logging.getLogger("bridge.historian.mqtt")
        self.status_topic = topics.SiteTopics(settings.site_id).status(SERVICE)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        # A takeover asks for the peer's own expiry: if it dies mid-drain, the rest of the
        # queue stays on the broker (the session is ended with expiry 0 once drained).
        props.SessionExpiryInterval = (
            settings.mqtt_witness_session_expiry_s if witness else settings.mqtt_session_expiry_s
        )
        props.ReceiveMaximum = settings.mqtt_receive_maximum
        login = MqttConfig.of(settings)
        if witness:
            login = replace(login, client_id=witness_client_id(settings.mqtt_client_id))
            self._log = logging.getLogger("bridge.historian.witness")
        if takeover is not None:
            login = replace(login, client_id=takeover.client_id)
            self._log = logging.getLogger("bridge.historian.takeover")
        self.session = MqttSession(
            login,
            log=self._log,
            status_topic=None if witness or takeover else self.status_topic,
            counters=counters,
            clean_start=False,
            properties=props,
            manual_ack=True,
        )
        self.session.on_connect = self._on_connect
        self.client = self.session.client
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self._subscribe_mid: int | None = None
        self._marker_mid: int | None = None
        # The takeover's drain: its markers, when the last was sent, when a message last came.
        self._markers: set[bytes] = set()
        self._marker_at = 0.0
        self._message_at = 0.0
        self._drained = False  # the marker came back (or there was no session to drain)
        self._taken = 0  # messages received from the peer's session
        self.ended = False  # the peer's session was ended (DISCONNECT, session expiry 0)

    # paho callbacks, on the thread running `run` ------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, flags: mqtt.ConnectFlags, properties: Properties | None
    ) -> None:
        """After each CONNACK the broker accepted (the session then says `online`)."""
        self._max_packet = getattr(properties, "MaximumPacketSize", None)
        # Announcements in flight on the last connection are published again from the store
        # (paho may resend its own copies too: at least once).
        self._announcing = _Announcing(confirmed=self._announcing.confirmed)
        self._letters_added.set()
        self._log.info(
            "connected to %s:%d (session %s)",
            self._settings.mqtt_host,
            self._settings.mqtt_port,
            "resumed" if flags.session_present else "new",
        )
        options = SubscribeOptions(qos=1)
        group = self._settings.mqtt_share_group
        if self._takeover is not None:
            self._begin_drain(client, flags, options)
            return
        if self._witness:
            filters = [*FILTERS, self._sync_topic]
        else:
            filters = [topics.shared(group, f) if group else f for f in FILTERS]
            if self._watch is not None:
                filters += self._watch.status_topics  # retained: the state now, then changes
        _, self._subscribe_mid = client.subscribe([(f, options) for f in filters])

    def _begin_drain(
        self, client: mqtt.Client, flags: mqtt.ConnectFlags, options: SubscribeOptions
    ) -> None:
        """The peer's session is ours: route nothing new to it, then ask for a marker."""
        if not flags.session_present:
            self._log.info("%s has no session on the broker: nothing to drain", self._takeover)
            self._drained = True
            return
        group = self._settings.mqtt_share_group
        # In this order on one connection: the broker has removed the group's filters from
        # the session before it routes the marker, so the marker is the last message queued.
        client.unsubscribe([topics.shared(group, f) for f in FILTERS])
        _, self._subscribe_mid = client.subscribe([(self._sync_topic, options)])

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:  # the ACL: nothing will arrive; say so, and keep covering
            self._log.error("the broker refused a subscription: %s", ", ".join(refused))
            return
        if self._takeover is not None:
            self._send_marker()
            return
        if self._coverage is not None:
            self._coverage.subscribed(witness=self._witness)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        # Never raise here: paho would re-raise from loop() and end the ingest thread.
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # the broker checks UTF-8; keep what came anyway
            topic = bytes(msg._topic).decode("utf-8", "backslashreplace")
        payload = bytes(msg.payload)
        if self._takeover is not None:
            self._message_at = time.monotonic()
        if not self._witness and _historians_own(topic):
            client.ack(msg.mid, msg.qos)
            if self._watch is not None and self._watch.watches(topic):
                self._watch.status(topic, payload, time.monotonic())
            elif payload in self._markers:  # everything queued before it has arrived
                self._drained = True
            return
        if self._takeover is not None:
            self._taken += 1
        if self._witness and not self._keep(topic, payload):
            client.ack(msg.mid, msg.qos)  # the group has it: received, not kept
            self._counters.add("witness_skipped")
            return
        if not self._pending:
            self._first_pending = time.monotonic()
        self._pending.append(_Received(topic, payload, msg.mid, msg.qos))
        self._pending_bytes += len(payload)

    def _keep(self, topic: str, payload: bytes) -> bool:
        """The witness keeps a message while the group's subscription may be missing."""
        assert self._coverage is not None
        if topic == self._sync_topic:
            if self._coverage.seen(payload):
                self._log.info("the shared subscription is back: the witness stops keeping")
            return False
        return self._coverage.covering

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        if mid == self._marker_mid:
            self._marker_mid = None
            if reason.is_failure and self._coverage is not None:
                self._log.error("the broker refused the witness's marker: %s", reason)
                self._coverage.marker_failed()
            return
        letter = self._announcing.by_mid.pop(mid, None)
        if letter is not None:
            if reason.is_failure and not self._refused:  # e.g. the ACL: it stays in the store
                self._refused = True
                self._log.warning("the broker refused a dead letter (%d): %s", letter, reason)
            self._announcing.confirmed.append(letter)

    # the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Connect, receive and commit until `stop`; reconnect with capped backoff.

        A takeover connects once: it returns when the peer's session is ended, or when its
        connection ends for any other reason (the peer is back: it gives up at once)."""
        self.session.run(stop, self, once=self._takeover is not None)
        self._commit_if_due(force=True)
        if self._takeover is not None:
            if stop.is_set() and not self.ended:
                self._log.info(
                    "stopped mid-takeover of %s: the rest stays in its session", self._takeover
                )
                self.session.close()
            elif self.ended:
                self._counters.add("takeovers")
                self._log.info(
                    "drained %s's session (%d messages) and ended it", self._takeover, self._taken
                )
            else:
                self._log.warning(
                    "gave up the takeover of %s after %d messages: the connection ended "
                    "(the peer is back, or the broker went away)",
                    self._takeover,
                    self._taken,
                )

    def poll_timeout(self) -> float:
        # While a group is open, only look for more of it (no wait): a look that finds
        # nothing new means the burst is over, and the group is committed at once.
        self._waiting = len(self._pending)
        return 0.0 if self._waiting else self._settings.commit_interval_s

    def after_poll(self, ok: bool) -> None:
        """After each network poll: commit the group if it is due, announce dead letters."""
        over = len(self._pending) == self._waiting
        if self._takeover is not None:
            self._drain_turn(ok, over)
            return
        self._commit_if_due(force=over or not ok)
        if not self._witness:
            self._announce()
        if self._coverage is not None:
            if not ok:
                self._coverage.lost(witness=self._witness)
            elif not self._witness and self.session.connected:
                self._publish_marker(self._coverage)

    def _drain_turn(self, ok: bool, over: bool) -> None:
        """The takeover's turn: commit; once the marker is back and all is committed, end."""
        self._commit_if_due(force=over or not ok or self._drained)
        if not ok or self.ended or not self.session.connected:
            return
        if self._drained and not self._pending:
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0  # the broker drops the session and its queue
            self.session.end(props)
            self.ended = True
            return
        quiet = time.monotonic() - max(self._marker_at, self._message_at)
        if self._markers and not self._drained and quiet > MARKER_RETRY_S:
            self._send_marker()

    def _send_marker(self) -> None:
        """A drain marker on this historian's sync topic, to the borrowed session itself."""
        marker = b"takeover:" + secrets.token_hex(16).encode()
        self._markers.add(marker)
        self._marker_at = time.monotonic()
        self.client.publish(self._sync_topic, marker, qos=1)

    def _publish_marker(self, coverage: Coverage) -> None:
        """After the shared subscription's SUBACK: tell the witness where the group took over."""
        marker = coverage.marker_due()
        if marker is None:
            return
        info = self.client.publish(self._sync_topic, marker, qos=1)
        if info.rc is not MQTTErrorCode.MQTT_ERR_SUCCESS:
            coverage.marker_failed()
            return
        self._marker_mid = info.mid

    def _commit_if_due(self, *, force: bool = False) -> None:
        if not self._pending:
            return
        due = time.monotonic() - self._first_pending >= self._settings.commit_interval_s
        full = len(self._pending) >= COMMIT_MAX or self._pending_bytes >= COMMIT_MAX_BYTES
        if not (force or due or full):
            return
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        lines: list[bytes] = []
        letters: list[tuple[str, str, bytes]] = []
        for received in batch:
            try:
                lines.extend(self._convert(received.topic, received.payload))
            except PayloadError as error:
                letters.append((str(error), received.topic, received.payload))
            except Exception as error:  # a bug met by this message: it alone is refused
                self._log.exception("converting a message from %s failed", received.topic)
                reason = f"historian error: {type(error).__name__}: {error}"
                letters.append((reason, received.topic, received.payload))
        # Durable first, acknowledged second: this order is the no-loss guarantee.
        if letters:
            self._deadletters.add_many(letters, SERVICE)
            self._letters_added.set()
        self._spool.put_many(lines)
        for received in batch:
            self.client.ack(received.mid, received.qos)
        prefix = self._prefix
        self._counters.add(f"{prefix}received", len(batch))
        self._counters.add(f"{prefix}points", len(lines))
        if letters:
            self._counters.add(f"{prefix}invalid", len(letters))
            self._counters.add("dead_letters", len(letters))
        self._on_spooled()

    def deadletter_batch(self, lines: Sequence[bytes], reason: str) -> None:
        """Keep lines InfluxDB rejected as a dead letter; durable on return (writer's thread)."""
        self._deadletters.add_many([(reason, "influxdb", b"\n".join(lines))], SERVICE)
        self._letters_added.set()

    def _announce(self) -> None:
        """Publish stored dead letters the broker has not confirmed; mark those it has."""
        state = self._announcing
        if state.confirmed:
            confirmed, state.confirmed = state.confirmed, []
            self._deadletters.mark_published(confirmed)
        room = ANNOUNCE_WINDOW - len(state.by_mid)
        if room <= 0 or not self.session.connected or not self._letters_added.is_set():
            return
        self._letters_added.clear()  # cleared before the read: a letter added now sets it again
        letters = self._deadletters.unpublished(room, after_id=state.last_id)
        if len(letters) == room:
            self._letters_added.set()  # more wait
        topic = topics.deadletter(SERVICE)
        limit = None if self._max_packet is None else self._max_packet - PACKET_OVERHEAD
        for letter in letters:
            data = letter.encode(max_bytes=limit)
            info = self.client.publish(topic, data, qos=1)
            if info.rc is not MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._letters_added.set()  # not sent: try again on the next turn
                return
            state.by_mid[info.mid] = letter.id
            state.last_id = letter.id

    def close(self) -> None:
        """Say offline (retained) and disconnect cleanly; the session stays on the broker."""
        self.session.close()
