"""One MQTT session (paho-mqtt 2, MQTT 5) for the edge, the historian and the plant command.

    session = MqttSession(MqttConfig.of(settings), log=log, status_topic=topic, ...)
    session.on_connect = hook          # after each CONNACK that is a success
    session.client.on_message = ...    # the service's own callbacks, on the loop's thread
    session.run(stop, turn)            # on a thread of its own, until `stop` is set
    session.close()                    # offline (retained), DISCONNECT

What every client of ours did alike, in one place:

- the client: MQTT 5, paho's callback API 2, the login, TLS when `mqtt_tls` is set or a CA
  file is named (the server's certificate is always verified), and the Last Will `offline`
  (retained, QoS 1) on the service's status topic;
- an explicit loop on the caller's thread, as aiomqtt's anchor has it: open the socket
  (`reconnect`), poll it (`loop`), let the service do its work after each poll (`Turn`), and
  after a refused or lost connection wait `core.backoff.Backoff` before opening it again. Only
  changes of state are logged; each failed attempt counts in `mqtt_reconnects`;
- after each CONNACK: refused (logged, the loop retries) or up (`on_connect`, then `online`,
  retained, on the status topic);
- a clean close: `offline` (retained) published and acknowledged, at most 2 s, then a
  DISCONNECT, so the broker does not publish the Will.

`MqttConfig` holds the settings every service names alike (`mqtt_host`, `mqtt_port`,
`mqtt_username`, `mqtt_password`, `mqtt_client_id`, `mqtt_tls`, `mqtt_tls_ca`,
`mqtt_keepalive_s`, `retry_initial_s`, `retry_max_s`): `MqttConfig.of(settings)` reads them
from any service's settings. The controller, which may not import the bridge, names them alike
and is served by aiomqtt.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from bridge.counters import Counters
from core.backoff import Backoff

CLOSE_TIMEOUT_S = 2.0  # how long a clean close waits for the broker to take `offline`


class MqttSettings(Protocol):
    """The MQTT settings of a service, as every service's settings class names them."""

    mqtt_host: str
    mqtt_port: int
    mqtt_username: str
    mqtt_password: SecretStr
    mqtt_client_id: str
    mqtt_tls: bool
    mqtt_tls_ca: Path | None
    mqtt_keepalive_s: int
    retry_initial_s: float
    retry_max_s: float


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """Where the broker is, who logs in, how (TLS when `tls` is set or `tls_ca` named), and
    how long to wait between attempts (doubled from `retry_initial_s` up to `retry_max_s`)."""

    host: str
    port: int
    username: str
    password: str = ""
    client_id: str = ""
    tls: bool = False
    tls_ca: Path | None = None  # CA bundle; None: the system's
    keepalive_s: int = 60
    retry_initial_s: float = 0.5
    retry_max_s: float = 10.0

    @classmethod
    def of(cls, s: MqttSettings) -> MqttConfig:
        """The login a service's settings describe."""
        return cls(
            host=s.mqtt_host,
            port=s.mqtt_port,
            username=s.mqtt_username,
            password=s.mqtt_password.get_secret_value(),
            client_id=s.mqtt_client_id,
            tls=s.mqtt_tls,
            tls_ca=s.mqtt_tls_ca,
            keepalive_s=s.mqtt_keepalive_s,
            retry_initial_s=s.retry_initial_s,
            retry_max_s=s.retry_max_s,
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def make_client(
    login: MqttConfig, *, will_topic: str | None = None, manual_ack: bool = False
) -> mqtt.Client:
    """A paho client for `login` (MQTT 5), not yet connected; `offline` its Will on `will_topic`."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=login.client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=manual_ack,
    )
    client.username_pw_set(login.username, login.password or None)
    if login.tls or login.tls_ca is not None:
        client.tls_set(
            ca_certs=str(login.tls_ca) if login.tls_ca else None, cert_reqs=ssl.CERT_REQUIRED
        )
    if will_topic is not None:
        client.will_set(will_topic, b"offline", qos=1, retain=True)
    return client


class Turn(Protocol):
    """A service's part of the loop: how long a poll may wait, and its work after each."""

    def poll_timeout(self) -> float:
        """Seconds the next network poll may wait for traffic."""
        ...

    def after_poll(self, ok: bool) -> None:
        """Work after a poll; `ok` False: the connection was refused or lost in it."""
        ...


@dataclass(frozen=True, slots=True)
class Idle:
    """A turn with no work of its own: the session only receives (callbacks do the rest)."""

    timeout_s: float = 0.1

    def poll_timeout(self) -> float:
        return self.timeout_s

    def after_poll(self, ok: bool) -> None:
        pass


#: Called on the loop's thread after a successful CONNACK: the client, the CONNACK's flags
#: (session present) and properties (the broker's limits).
ConnectHook = Callable[[mqtt.Client, mqtt.ConnectFlags, Properties | None], None]


class MqttSession:
    """A paho client and the explicit loop that keeps it connected; `run` it on its own thread.

    Args:
        login: the broker, the account, and the backoff between attempts.
        log: the service's logger (its state changes are logged there).
        status_topic: where `online` is said after each connection and `offline` by the Will
            and on close (retained); None: nothing is said.
        counters: where `mqtt_reconnects` is counted, if anywhere.
        clean_start: start a new session on the broker at each connection.
        properties: the CONNECT's MQTT 5 properties (session expiry, receive maximum).
        manual_ack: acknowledge received messages by hand (`client.ack`).
        max_inflight: QoS 1 messages awaiting their PUBACK at most; None: paho's default.
        max_queued: messages paho queues beyond those at most (0: no limit); None: its default.
    """

    def __init__(
        self,
        login: MqttConfig,
        *,
        log: logging.Logger,
        status_topic: str | None = None,
        counters: Counters | None = None,
        clean_start: bool = True,
        properties: Properties | None = None,
        manual_ack: bool = False,
        max_inflight: int | None = None,
        max_queued: int | None = None,
    ) -> None:
        self.login = login
        self.status_topic = status_topic
        self.on_connect: ConnectHook = lambda *args: None
        self.backoff = Backoff(login.retry_initial_s, login.retry_max_s)
        self._log = log
        self._counters = counters
        self._connected = False
        self.client = make_client(login, will_topic=status_topic, manual_ack=manual_ack)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        # paho takes these only before the connection is set up
        if max_inflight is not None:
            self.client.max_inflight_messages_set(max_inflight)
        if max_queued is not None:
            self.client.max_queued_messages_set(max_queued)
        # connect_async only records where and how; `run` makes the connection.
        self.client.connect_async(
            login.host,
            login.port,
            keepalive=login.keepalive_s,
            clean_start=clean_start,
            properties=properties,
        )

    @property
    def connected(self) -> bool:
        """The broker accepted the connection and it has not been lost since."""
        return self._connected

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._log.error("broker refused the connection: %s", reason)
            return
        self._connected = True
        self.on_connect(client, flags, properties)
        if self.status_topic is not None:
            client.publish(self.status_topic, b"online", qos=1, retain=True)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._connected:
            self._log.warning("disconnected from the broker: %s", reason)
        self._connected = False

    def run(self, stop: threading.Event, turn: Turn | None = None, *, once: bool = False) -> None:
        """Connect, poll and let `turn` work until `stop`; reconnect after the backoff.

        `once`: one connection only; the loop ends when it is refused, lost or closed, or
        the broker cannot be reached (a session borrowed for a while: a historian's takeover
        of a dead peer's session, which the peer's return ends and must not be fought for).
        """
        turn = turn or Idle()
        failing = False
        # From reconnect() until loop() reports the connection lost. Not is_connected(): it is
        # False while the CONNACK is on its way (a second reconnect() then would start over),
        # and paho leaves it True after a packet it could not read closed the socket.
        socket_open = False
        while not stop.is_set():
            if not socket_open:
                try:
                    self.client.reconnect()
                    socket_open = True
                except OSError as error:
                    if once:
                        self._log.warning("broker %s unreachable: %s", self.login.where, error)
                        return
                    if not failing:
                        self._log.warning(
                            "broker %s unreachable, retrying: %s", self.login.where, error
                        )
                    failing = True
                    self._wait(stop)
                    continue
            rc = self.client.loop(timeout=turn.poll_timeout())
            ok = rc is MQTTErrorCode.MQTT_ERR_SUCCESS
            turn.after_poll(ok)
            if ok:
                if self._connected:
                    failing = False
                    self.backoff.reset()
                continue
            if once:
                return
            # Refused or lost: open the socket again after a pause.
            socket_open, failing = False, True
            self._wait(stop)

    def _wait(self, stop: threading.Event) -> None:
        if self._counters is not None:
            self._counters.add("mqtt_reconnects")
        stop.wait(self.backoff.next())

    def end(self, properties: Properties | None = None) -> None:
        """Disconnect on purpose, from the loop's thread, saying nothing on the status topic:
        a DISCONNECT with `properties` (e.g. a session expiry of 0: the broker drops the
        session) that the loop's next poll sends. Not logged as a lost connection."""
        self._connected = False
        self.client.disconnect(properties=properties)

    def close(self) -> None:
        """Say offline (retained, if there is a status topic) and disconnect cleanly."""
        if not self.client.is_connected():
            return
        if self.status_topic is not None:
            info = self.client.publish(self.status_topic, b"offline", qos=1, retain=True)
            deadline = time.monotonic() + CLOSE_TIMEOUT_S
            while not info.is_published() and time.monotonic() < deadline:
                self.client.loop(timeout=0.05)
        self.client.disconnect()
        self.client.loop(timeout=0.1)
