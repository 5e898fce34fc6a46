"""Helpers for the edge and pipeline tests: the OPC UA server with an `edge` operator account,
the edge as a real process, commands over MQTT 5, and counting InfluxDB against ground truth.

Ground truth is the OPC UA server's own tag history (`PlantServer.history`): every sample the
server published, by node, with its plant source time. The server runs in-process (on its own
thread and loop, as in the OPC UA tests), so the test reads the history directly, between two
ticks, on the server's loop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.payload import CommandReply, CommandRequest, decode_reply, encode_command
from core.timebase import to_ns
from core.topics import SiteTopics
from opcua_server.security import hash_password
from testkit.servers import InfluxDB, Mosquitto
from tests.support.mqtt import client as mqtt_client
from tests.support.mqtt import wait_until

from .conftest import RunningServer, free_port, serve

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
        "SITE": SITE,
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


class EdgeProcess:
    """`python -m bridge.edge` as a child process: start, SIGKILL, SIGTERM, restart."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bridge.edge"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.alive:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self) -> int:
        assert self.proc is not None
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


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
            self.replies[bytes(correlation)] = decode_reply(msg.payload)

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


def influx_times(influx: InfluxDB, site: str = SITE) -> dict[str, list[int]]:
    """Per tag id, the source times InfluxDB holds (telemetry and truth), from `<name>_seq`."""
    out: dict[str, list[int]] = {}
    for measurement in ("telemetry", "truth"):
        rows = influx.query(f"SELECT * FROM {measurement} WHERE site = '{site}'")
        for row in rows:
            for key, value in row.items():
                if key.endswith("_seq") and value is not None:
                    tag = f"{row['module']}.{key[: -len('_seq')]}"
                    out.setdefault(tag, []).append(int(row["time"]))
    return out


@dataclass
class Tally:
    """InfluxDB against the truth, over a window of source times."""

    expected: int
    stored: int
    lost: int
    extra: int
    duplicates: int
    missing_examples: list[tuple[str, int]]

    def __str__(self) -> str:
        return (
            f"expected {self.expected}, stored {self.stored}, lost {self.lost}, "
            f"extra {self.extra}, duplicates {self.duplicates}, e.g. missing "
            f"{self.missing_examples[:5]}"
        )


def tally(
    truth: dict[str, list[int]], stored: dict[str, list[int]], start_ns: dict[str, int], end_ns: int
) -> Tally:
    """Compare per tag over (start_ns[tag], end_ns]: lost, beyond-truth and duplicated points."""
    expected = got = lost = extra = dups = 0
    missing: list[tuple[str, int]] = []
    for tag, first in start_ns.items():
        want = {t for t in truth.get(tag, []) if first <= t <= end_ns}
        have_list = [t for t in stored.get(tag, []) if first <= t <= end_ns]
        have = set(have_list)
        dups += len(have_list) - len(have)
        expected += len(want)
        got += len(have)
        gone = want - have
        lost += len(gone)
        extra += len(have - want)
        missing.extend((tag, t) for t in sorted(gone)[:2])
    return Tally(expected, got, lost, extra, dups, missing)


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
) -> Tally:
    """Wait until InfluxDB holds every true sample up to `end_ns` (or time out); the tally."""
    deadline = time.monotonic() + timeout
    while True:
        result = tally(truth_times(running), influx_times(influx), start, end_ns)
        if result.lost == 0 or time.monotonic() > deadline:
            return result
        time.sleep(1.0)
