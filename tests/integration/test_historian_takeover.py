"""The takeover's session against a real Mosquitto, in process (bridge/historian/takeover.py).

A peer's session (client id `peer-1`) on the historians' shared subscription, with messages
queued in it while it is offline; this historian borrows it (`MqttIngest(takeover=...)`) with
a spool that only records. The whole service, killed for good in the central tier, is
tests/integration/test_central_tier.py's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import SecretStr

from bridge.counters import Counters
from bridge.deadletter import DeadLetterStore
from bridge.historian.ingest import MqttIngest
from bridge.historian.settings import HistorianSettings
from bridge.historian.takeover import Peer
from bridge.spool import Spool
from core import topics
from testkit.servers import Mosquitto
from tests.support.mqtt import client, publish_and_wait, session_present, wait_until

pytestmark = pytest.mark.integration

PEER = Peer("peer-1", "hist-peer-1")
QUEUED = 40
TOPIC = topics.SiteTopics("site1").telemetry("api_feeder")


class RecordingSpool:
    """Keeps what is put in it; `hold` makes the next put wait until `release` is set."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.hold = threading.Event()
        self.holding = threading.Event()
        self.release = threading.Event()

    def put_many(self, lines: Sequence[bytes]) -> None:
        if self.hold.is_set():
            self.hold.clear()
            self.holding.set()
            self.release.wait(30)
        self.lines.extend(lines)


def peer_client(broker: Mosquitto, received: list[bytes] | None = None) -> mqtt.Client:
    """The peer itself: its client id, its persistent session, the group's filter."""
    c = client(broker, "historian", PEER.client_id, connect=False)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 600
    flags: list[bool] = []
    c.on_connect = lambda cl, ud, f, reason, p: flags.append(f.session_present)
    if received is not None:
        c.on_message = lambda cl, ud, msg: received.append(bytes(msg.payload))
    c.connect(broker.host, broker.port, keepalive=10, clean_start=False, properties=props)
    c.loop_start()
    wait_until(lambda: bool(flags), 10, "the peer's CONNACK")
    return c


def queue_for_the_peer(broker: Mosquitto) -> list[bytes]:
    """The peer subscribes, goes away (its session stays), and QUEUED messages wait for it."""
    peer = peer_client(broker)
    done = threading.Event()
    peer.on_subscribe = lambda *args: done.set()
    peer.subscribe(topics.shared("historian", topics.ALL_TELEMETRY), qos=1)
    assert done.wait(10)
    peer.disconnect()
    peer.loop_stop()
    edge = client(broker, "edge")
    payloads = [f"message {i}".encode() for i in range(QUEUED)]
    for payload in payloads:
        publish_and_wait(edge, TOPIC, payload)
    edge.disconnect()
    return payloads


def borrow(broker: Mosquitto, tmp_path: Path, spool: RecordingSpool) -> MqttIngest:
    settings = HistorianSettings(
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_password=SecretStr(broker.passwords["historian"]),
        mqtt_client_id="survivor",
        site_id="hist-survivor",
        spool_path=tmp_path / "survivor.spool.sqlite",
        retry_initial_s=0.1,
        retry_max_s=0.2,
    )
    deadletters = DeadLetterStore(tmp_path / "dl.sqlite", synchronous="NORMAL")
    convert = lambda topic, payload: [payload]  # noqa: E731
    return MqttIngest(
        settings,
        cast(Spool, spool),  # a stand-in: put_many is all MqttIngest asks of its spool
        convert,
        Counters(),
        deadletters,
        takeover=PEER,
    )


def run_in_thread(ingest: MqttIngest) -> threading.Thread:
    thread = threading.Thread(target=ingest.run, args=(threading.Event(),), daemon=True)
    thread.start()
    return thread


def test_a_takeover_drains_the_peers_queue_and_ends_its_session(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    payloads = queue_for_the_peer(mosquitto)
    spool = RecordingSpool()
    ingest = borrow(mosquitto, tmp_path, spool)
    run_in_thread(ingest).join(20)
    assert ingest.ended
    assert spool.lines == payloads  # all of them, in order, once
    assert not session_present(mosquitto, "historian", PEER.client_id)


def test_a_takeover_of_a_peer_without_a_session_ends_at_once(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    ingest = borrow(mosquitto, tmp_path, RecordingSpool())
    run_in_thread(ingest).join(20)
    assert ingest.ended
    assert not session_present(mosquitto, "historian", PEER.client_id)


def test_the_peer_back_mid_takeover_ends_it_at_once_and_keeps_the_rest(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    payloads = queue_for_the_peer(mosquitto)
    spool = RecordingSpool()
    spool.hold.set()  # the takeover's first commit waits: it is mid-drain
    ingest = borrow(mosquitto, tmp_path, spool)
    thread = run_in_thread(ingest)
    assert spool.holding.wait(10)
    received: list[bytes] = []
    peer = peer_client(mosquitto, received)  # the peer is back: the broker drops the takeover
    spool.release.set()
    thread.join(10)
    assert not thread.is_alive() and not ingest.ended
    assert "gave up the takeover of peer-1@hist-peer-1" in caplog.text
    # What the takeover had not acknowledged is the peer's; between them, every message.
    wait_until(lambda: set(spool.lines) | set(received) == set(payloads), 10, "every message")
    # It did not come back for the session: the peer stays connected.
    time.sleep(1.0)
    assert peer.is_connected()
    peer.disconnect()
    peer.loop_stop()
