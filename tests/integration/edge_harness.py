"""Helpers for the edge and pipeline tests: the OPC UA server with an `edge` operator account,
the edge as a real process, commands over MQTT 5, and the ground truth InfluxDB is counted
against (with testkit/loss.py).

Ground truth is the OPC UA server's own tag history (`PlantServer.history`): every sample the
server published, by node, with its plant source time. The server runs in-process (on its own
thread and loop, as in the OPC UA tests), so the test reads the history directly, between two
ticks, on the server's loop.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from apps.launcher import Child, free_port
from core.payload import CommandReply, CommandRequest, decode_reply, encode_command
from core.timebase import to_ns
from core.topics import SiteTopics
from opcua_server.security import hash_password
from testkit.loss import Tally, influx_times, tally
from testkit.servers import InfluxDB, Mosquitto
from tests.support.mqtt import client as mqtt_client
from tests.support.mqtt import wait_until

from .conftest import RunningServer, serve

SITE = "site1"
EDGE_PASSWORD = "edge-secret"
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def opcua_with_edge_user(tmp_path: Path, **overrides: Any) -> Iterator[RunningServer]:
    """The twin's server (accelerated, 10x) with one user: `edge`, a gateway (its OnBehalfOf
    is honoured, as the stack's users file has it)."""
    users = tmp_path / "edge-users.toml"  # serve() writes its own users.toml
    users.write_text(
        f'[users.edge]\nrole = "gateway"\npassword_hash = "{hash_password(EDGE_PASSWORD)}"\n'
    )
    values: dict[str, Any] = {
        "users_file": users,
        "speed": 10.0,
        "history_window_s": 7200.0,
        "port": free_port(),
    }
    values.update(overrides)
    with serve(tmp_path, **values) as running:
        yield running


def edge_env(
    running: RunningServer, broker: Mosquitto, folder: Path, **overrides: object
) -> dict[str, str]:
    settings: dict[str, object] = {
        "SITE_ID": SITE,
        "OPCUA_URL": running.url,
        "OPCUA_NAMESPACE_URI": running.server.settings.namespace_uri,
        "OPCUA_USER": "edge",
        "OPCUA_PASSWORD": EDGE_PASSWORD,
        "OPCUA_WATCHDOG_S": 1.0,
        "MQTT_HOST": broker.host,
        "MQTT_PORT": broker.port,
        "MQTT_USERNAME": "edge",
        "MQTT_PASSWORD": broker.passwords["edge"],
        "MQTT_CLIENT_ID": f"edge-{uuid.uuid4().hex[:8]}",
        "SPOOL_PATH": folder / "edge.spool.sqlite",
        "METRICS_PERIOD_S": 1.0,
        "RETRY_INITIAL_S": 0.2,
        "RETRY_MAX_S": 1.0,
        "LOG_LEVEL": "INFO",
    }
    settings.update(overrides)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANT_EDGE_")}
    env.update({f"PLANT_EDGE_{k}": str(v) for k, v in settings.items()})
    return env


class EdgeProcess(Child):
    """`python -m bridge.edge` through the one launcher: start, SIGKILL, SIGTERM, restart."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        argv = [sys.executable, "-m", "bridge.edge"]
        super().__init__(name="edge", argv=argv, env=env, cwd=ROOT, log=log)


class Requester:
    """An MQTT 5 client that sends commands as `user` and waits for correlated replies."""

    def __init__(self, broker: Mosquitto, user: str) -> None:
        self.user = user
        self.topics = SiteTopics(SITE)
        self.replies: dict[bytes, CommandReply] = {}
        self.response_topic = self.topics.reply(user)
        self.client = mqtt_client(broker, user)
        done = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: done.set()
        self.client.subscribe(self.response_topic, qos=1)
        assert done.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        correlation = getattr(msg.properties, "CorrelationData", None)
        if correlation is not None:
            self.replies[bytes(correlation)] = decode_reply(bytes(msg.payload))

    def send(self, request: CommandRequest, as_user: str | None = None) -> bytes:
        correlation = uuid.uuid4().bytes
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = self.response_topic
        props.CorrelationData = correlation
        topic = self.topics.command(request.kind, as_user or self.user)
        self.client.publish(topic, encode_command(request), qos=1, properties=props)
        return correlation

    def call(self, request: CommandRequest, timeout: float = 15) -> CommandReply:
        correlation = self.send(request)
        wait_until(lambda: correlation in self.replies, timeout, f"a reply to {request}")
        return self.replies[correlation]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# Ground truth against InfluxDB ------------------------------------------------------------------


def truth_times(running: RunningServer) -> dict[str, list[int]]:
    """Every published sample's source time (ns) per tag id, from the server's history."""

    async def read() -> dict[str, list[int]]:
        server = running.server
        clock, history, nodes = server.clock, server.history, server.nodes
        out: dict[str, list[int]] = {}
        for tag_id, node in nodes.tags.items():
            samples = history.samples(node.nodeid)
            if samples is None:
                continue
            times = samples.times[samples.start :]
            out[tag_id] = [to_ns(clock.utc(t)) for t in times]
        return out

    return running.run(read)


def wait_for_plant_time(running: RunningServer, plant_s: float, timeout: float = 60) -> None:
    wait_until(lambda: running.plant.now >= plant_s, timeout, f"plant time {plant_s}")


def plant_ns(running: RunningServer, plant_s: float) -> int:
    return to_ns(running.server.clock.utc(plant_s))


def settle(
    influx: InfluxDB,
    running: RunningServer,
    start: dict[str, int],
    end_ns: int,
    timeout: float = 60,
    site: str = SITE,
) -> Tally:
    """Wait until InfluxDB holds every true sample of `site` up to `end_ns` (or time out);
    the tally."""
    deadline = time.monotonic() + timeout
    while True:
        result = tally(truth_times(running), influx_times(influx, site), start, end_ns)
        if result.lost == 0 or time.monotonic() > deadline:
            return result
        time.sleep(1.0)
