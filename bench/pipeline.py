"""Benchmark: the whole pipeline, OPC UA sample to queryable InfluxDB point, against raw MQTT.

    python -m bench.pipeline [--mode throughput|latency] [--tags N] [--rate R] [--seconds S]
                             [--sites N [--central]]

Scenario: the twin's OPC UA server (real time, speed 1, its default publish period, plus
synthetic tags up to N tags in all: they all change R times a second, `extra_tags_hz`) runs in a
child process; `python -m bridge.edge` subscribes to every tag and publishes through its durable
outbox at QoS 1 to Mosquitto (configured from deploy/mosquitto); `plant bridge historian` spools
and writes them with influxdb-client to InfluxDB 1.x through the test-only /api/v2/write proxy.
The brokers and databases come from `testkit`, the starters the tests use too (the proxy is
never deployed). `--mode throughput` is 5,600 tags at 1 Hz (about 5,590 samples/s offered: some
of the twin's 69 tags publish less often, and a server short of CPU misses ticks:
`offered_per_s` says what it published, `samples_per_s` what was stored), `--mode latency` 1,000
tags at 1 Hz (about 1,000 samples/s); --tags and --rate override the preset.

`--sites N` runs N sites, each its own OPC UA server (`siteK`, the same workload: --tags and
--rate are per site) and edge; with `--central` each site's edge publishes to the site's own
Mosquitto, bridged to a central Mosquitto (deploy/mosquitto/bridge.conf, bridge.acl:
testkit.make_central_tier), on which two historians (`historian-bench-1`, `-2`, each its own
spool, the default share group) share one subscription into the one InfluxDB. Without
`--central` every site publishes to the one broker of the one historian. Everything below is
counted per site (each against its own server's record, with testkit/loss.py) and reported
per site (`per_site`: samples/s, lost, p50/p99) and in total (the sums; the latencies of all
sites together); CPU sums the processes of a kind (`mosquitto`: the site brokers,
`mosquitto_central`: the centre). The raw MQTT baseline runs on the historians' broker.

The window: after a warm-up (every sampled tag is in InfluxDB, then WARMUP_S), the server is
asked for its plant time twice, `--seconds` apart. The window's samples are those whose source
time falls between the two marks.

- `lost`: samples the server published in the window (its own tag history, as the pipeline
  tests count them) that InfluxDB does not hold once the pipeline has drained (compared per tag
  and source timestamp through the `<name>_seq` fields of `telemetry` and `truth`; `extra` are
  stored points the server never published). The drain waits until nothing is missing, or
  until nothing new arrived for DRAIN_IDLE_S.
- `samples_per_s`: window samples stored in InfluxDB over the window's wall duration.
- Latency (`p50_ms`, `p99_ms`): source timestamp to queryable in InfluxDB. At speed 1 plant
  time runs with the wall clock; the server reports the constant offset between its plant clock
  (mapped to UTC) and `time.time()`, so a sample's source time is a wall time. One tag per twin
  module and value_00 of up to SAMPLED_SYNTHETIC synthetic modules (spread over all of them)
  are sampled: every POLL_S one InfluxQL request asks, per sampled tag, for every point newer
  than the newest one seen, and each new window point gets (wall time the answer arrived -
  its source time). That is an upper bound: a point became queryable at most POLL_S plus one
  query's duration earlier. Points keep being measured while the pipeline drains.
  `broker_p50_ms` / `broker_p99_ms` time the same tags at the broker (a subscriber as user
  `operator` in this process): source time to MQTT delivery, i.e. the server and edge share.
  `stages_ms` splits each probe sample seen at both places into stages (p50, p99 each), from
  the times the payload carries: `server` source time to the server's write (server_ns),
  `opcua_edge` to the edge's batch (sent_ns: subscription, intake, batching), `outbox_mqtt` to
  delivery by the broker (outbox commit, publish), `historian_influx` to queryable (ingest
  commit, the writer's wait, the write, and the poll).
- `raw_mqtt_per_s`: the baseline, in the same run through the same broker, before the pipeline
  starts: one plain paho publisher (this process, user `edge`, MQTT 5, QoS 1, in-flight
  window 1000 as the edge's) to one paho subscriber (a child process, user `operator`, QoS 1),
  one message per sample (a one-sample telemetry payload) on a reply topic no pipeline service
  reads, as fast as it goes for `--baseline-seconds`: received messages over the time from the
  first publish to the last delivery. `ratio` = samples_per_s / raw_mqtt_per_s. samples_per_s
  is bounded by the offered load (tags x rate), so a ratio says how the offered load compares
  with raw MQTT; the pipeline's ceiling is where raising --tags makes `lost` or `drain_s` grow.

Every service runs with its shipped defaults (`EdgeSettings`, `HistorianSettings`,
`OpcUaSettings`) but for plumbing (addresses, credentials, paths, names) and what makes the
workload or the ground truth (the server's `extra_tags` and `extra_tags_hz` = R, a
`publish_period_s` of 1/R where R is faster than the default period, and a history long
enough to hold the window). `--flush-interval` (historian) and `--edge-interval`
(the edge's OPC UA publishing and batch interval) override a default; `settings_changed` in
the JSON names every setting that differs from its default, with both values.

Service log lines at WARNING and above go to stderr. CPU per component over the window
is reported as % of one core. Prints one JSON object last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from pydantic import SecretStr

from apps.launcher import Child
from bench.settings import differing
from bridge.edge.settings import EdgeSettings
from bridge.historian.settings import HistorianSettings
from core import gc_policy
from core.payload import Sample, TelemetryBatch, encode_batch
from core.timebase import to_ns
from core.topics import SiteTopics
from opcua_server import OpcUaSettings, PlantServer
from opcua_server.security import hash_password
from testkit.historian import plant_executable
from testkit.loss import count, influx_times_of
from testkit.servers import (
    InfluxDB,
    Mosquitto,
    free_port,
    make_central_tier,
    running_influxdb,
    running_mosquitto,
)
from twin import Plant

SITE = "site1"
EDGE_PASSWORD = "edge-secret"
ROOT = Path(__file__).resolve().parents[1]
# Tags in all, rate (Hz). Throughput offers about 5,590 samples/s (the twin's 69 tags publish
# at most once a second, some less often): the goal is 5,000 stored per second, and a server
# that misses a tick on a busy machine (it does not catch up with a burst) must still offer more.
PRESETS = {"throughput": (5600, 1.0), "latency": (1000, 1.0)}
WARMUP_S = 5.0  # after every sampled tag has arrived
READY_TIMEOUT_S = 120.0  # for the edge to subscribe and the first points to arrive
POLL_S = 0.05  # latency poll period
SAMPLED_SYNTHETIC = 20  # synthetic modules sampled for latency
DRAIN_IDLE_S = 20.0  # give up draining when nothing new arrived for this long
DRAIN_MAX_S = 300.0
SERVICE_STOP_S = 20.0  # for the edge and the historian to stop before SIGKILL
BASELINE_S = 10.0  # raw MQTT baseline duration
BASELINE_BACKLOG = 5000  # published but not yet received, at most (bounds the memory)
NS = 1_000_000_000


# The server side (a child process) --------------------------------------------------------------
async def _serve(tags: int, rate: float, seconds: float, folder: Path, site: str) -> None:
    users = folder / ("users.toml" if site == SITE else f"users-{site}.toml")
    users.write_text(
        f'[users.edge]\nrole = "gateway"\npassword_hash = "{hash_password(EDGE_PASSWORD)}"\n'
    )
    keep_s = seconds + DRAIN_MAX_S + READY_TIMEOUT_S + 300.0
    settings = OpcUaSettings(
        site_id=site,
        host="127.0.0.1",
        port=free_port(),
        cert_dir=folder / ("pki" if site == SITE else f"pki-{site}"),
        users_file=users,
        allow_insecure=True,
        # speed 1 and the default publish period: real time, source timestamps are wall times
        # (plus an offset); only a rate above the period's own needs a shorter one.
        extra_tags=max(0, tags - _twin_tag_count()),
        extra_tags_hz=rate,
        history_window_s=keep_s,
        history_max_samples=max(10, int(keep_s * max(rate, 1.0)) + 100),
    )
    # Ticks at least as often as the synthetic tags change (the shipped period up to 10 Hz).
    settings.publish_period_s = min(settings.publish_period_s, 1.0 / rate)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    gc_policy.for_service()  # as `plant opcua serve` runs it
    async with PlantServer(settings) as server:
        gc_policy.freeze_startup()
        nodes, clock = server.nodes, server.clock
        ready = {
            "url": server.endpoint,
            "namespace": settings.namespace_uri,
            "settings": differing(settings),
        }
        print(json.dumps(ready), flush=True)
        while line := (await reader.readline()).decode().strip():
            command, *args = line.split()
            if command == "quit":
                break
            if command == "mark":
                async with server.between_ticks():
                    answer: dict[str, Any] = {
                        "plant_ns": to_ns(clock.utc(server.plant.now)),
                        "offset_s": time.time() - clock.utc(clock.target()).timestamp(),
                        "published": server.published,
                        "wall": time.time(),
                    }
            else:  # truth LOW HIGH: source times (ns) per tag id with LOW < t <= HIGH
                low, high = int(args[0]), int(args[1])
                answer = {}
                for tag_id, node in nodes.tags.items():
                    samples = server.history.samples(node.nodeid)
                    if samples is not None:
                        times = (to_ns(clock.utc(t)) for t in samples.times[samples.start :])
                        answer[tag_id] = [t for t in times if low < t <= high]
            print(json.dumps(answer), flush=True)


def _twin_tag_count() -> int:
    return len(Plant().registry)


class ServerChild:
    """The OPC UA server in a child process, answering `mark` and `truth` on its stdin."""

    def __init__(self, tags: int, rate: float, seconds: float, folder: Path, site: str) -> None:
        self.site = site
        command = [sys.executable, "-m", "bench.pipeline", "--serve", "--tags", str(tags)]
        command += ["--rate", str(rate), "--seconds", str(seconds), "--folder", str(folder)]
        command += ["--site", site]
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the OPC UA server did not start")
        ready = json.loads(line)
        self.url: str = ready["url"]
        self.namespace: str = ready["namespace"]
        self.settings: dict[str, Any] = ready["settings"]

    def ask(self, line: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# The services -------------------------------------------------------------------------------
class Service(Child):
    """A pipeline service through the one launcher, started at once; its output in a log file."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        super().__init__(name=log.stem, argv=command, env=env, cwd=ROOT, log=log)
        self.start()


def edge_settings(
    server: ServerChild, broker: Mosquitto, folder: Path, interval_s: float | None
) -> EdgeSettings:
    """The edge's defaults, its plumbing, and the interval if the command line sets one."""
    settings = EdgeSettings(
        site_id=server.site,
        opcua_url=server.url,
        opcua_namespace_uri=server.namespace,
        opcua_user="edge",
        opcua_password=SecretStr(EDGE_PASSWORD),
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_username="edge",
        mqtt_password=SecretStr(broker.passwords["edge"]),
        mqtt_client_id=f"edge-{server.site}-{uuid.uuid4().hex[:8]}",
        spool_path=folder / f"edge-{server.site}.spool.sqlite",
    )
    if interval_s is not None:
        settings.publishing_interval_ms = interval_s * 1000.0
        settings.batch_interval_s = interval_s
    return settings


def historian_settings(
    broker: Mosquitto,
    influx: InfluxDB,
    folder: Path,
    flush_interval_s: float | None,
    instance: int | None = None,
) -> HistorianSettings:
    """The historian's defaults, its plumbing, and the flush interval if the command line sets
    one (then it waits for it: flush_on_burst off). `instance`: one of the central
    historians (its own client id, spool and status topic; the default share group)."""
    assert influx.proxy is not None
    name = "historian-bench" if instance is None else f"historian-bench-{instance}"
    settings = HistorianSettings(
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_username="historian",
        mqtt_password=SecretStr(broker.passwords["historian"]),
        mqtt_client_id=name,
        influx_url=influx.v2_url,
        influx_token=SecretStr("bench-token"),
        influx_bucket=influx.db,
        spool_path=folder / f"{name}.spool.sqlite",
    )
    if instance is not None:
        settings.site_id = f"central-{instance}"
    if flush_interval_s is not None:
        settings.flush_interval_s = flush_interval_s
        settings.flush_on_burst = False
    return settings


def service_env(prefix: str, settings: EdgeSettings | HistorianSettings) -> dict[str, str]:
    """The process environment that gives a service exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefix)}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, tuple | list | bool):
            text = json.dumps(list(value) if isinstance(value, tuple | list) else value)
        else:
            text = str(value)
        env[f"{prefix}{name.upper()}"] = text
    return env


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Probe:
    """A tag of a site whose arrival is timed: its measurement, module and field."""

    measurement: str
    module: str
    name: str
    site: str = SITE

    @property
    def tag(self) -> str:
        return f"{self.module}.{self.name}"

    def query(self, after_ns: int) -> str:
        return (
            f"SELECT \"{self.name}_seq\" FROM {self.measurement} WHERE site = '{self.site}' "
            f"AND module = '{self.module}' AND time > {after_ns}"
        )


def probes(tags: int, site: str = SITE) -> list[Probe]:
    """One measured tag per twin module, value_00 of up to SAMPLED_SYNTHETIC synthetic modules."""
    chosen: dict[str, Probe] = {}
    for tag in Plant().registry.values():
        if not tag.ground_truth and tag.access.value == "measured":
            chosen.setdefault(tag.module, Probe("telemetry", tag.module, tag.name, site))
    modules = -(-max(0, tags - _twin_tag_count()) // 100)
    step = max(1, modules // SAMPLED_SYNTHETIC)
    for i in range(0, modules, step)[:SAMPLED_SYNTHETIC]:
        module = f"synthetic_{i:03d}"
        chosen[module] = Probe("telemetry", module, "value_00", site)
    return list(chosen.values())


@dataclass
class LatencyPoller:
    """Polls InfluxDB for new points of the probes; records arrival minus source time.

    `offset_s` and `window` are per site (each server has its own plant clock offset and its
    own measured window); latencies are kept per site.
    """

    influx: InfluxDB
    probes: list[Probe]
    offset_s: dict[str, float]
    newest: dict[Probe, int] = field(default_factory=dict)
    window: dict[str, tuple[int, int]] = field(default_factory=dict)  # site -> (low, high]
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)  # per site
    # (site, tag, source ns) -> wall time it was seen queryable
    arrivals: dict[tuple[str, str, int], float] = field(default_factory=dict)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self, after_ns: int) -> None:
        self.newest = dict.fromkeys(self.probes, after_ns)
        self._thread = threading.Thread(target=self._run, name="latency-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                results = self.influx.statements([p.query(self.newest[p]) for p in self.probes])
            except (OSError, RuntimeError):
                self.errors += 1
                continue
            arrived = time.time()
            for probe, rows in zip(self.probes, results, strict=True):
                low, high = self.window.get(probe.site, (0, 2**62))
                for row in rows:
                    source_ns = int(row[0])
                    self.newest[probe] = max(self.newest[probe], source_ns)
                    if low < source_ns <= high:
                        source_wall = source_ns / NS + self.offset_s[probe.site]
                        latency_ms = (arrived - source_wall) * 1000.0
                        self.latencies_ms.setdefault(probe.site, []).append(latency_ms)
                        self.arrivals[(probe.site, probe.tag, source_ns)] = arrived

    def seen_all(self) -> bool:
        return all(newest > 0 for newest in self.newest.values())


class BrokerProbe:
    """Times the probes at the broker (as user `operator`): source time to MQTT delivery.

    With the central tier, the central broker: through the site broker and its bridge.
    """

    def __init__(self, broker: Mosquitto, probes: list[Probe], offset_s: dict[str, float]) -> None:
        self.tags = {(p.site, p.tag) for p in probes}
        self.modules = {p.module for p in probes}
        self.offset_s = offset_s
        self.window: dict[str, tuple[int, int]] = {}
        self.latencies_ms: list[float] = []
        # (site, tag, source ns) -> (server ns, edge batch sent ns, wall time delivered)
        self.stages: dict[tuple[str, str, int], tuple[int, int, float]] = {}
        self.client = _connect(broker, "operator")
        self.client.on_message = self._on_message
        for site in sorted({p.site for p in probes}):
            self.client.subscribe(SiteTopics(site).all_telemetry, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        arrived = time.time()
        if msg.topic.split("/")[-2] not in self.modules:
            return
        batch = json.loads(msg.payload)
        site = batch["site"]
        low, high = self.window.get(site, (0, 2**62))
        for sample in batch["samples"]:
            if (site, sample["tag"]) in self.tags and low < sample["source_ns"] <= high:
                source_wall = sample["source_ns"] / NS + self.offset_s[site]
                self.latencies_ms.append((arrived - source_wall) * 1000.0)
                key = (site, sample["tag"], sample["source_ns"])
                self.stages[key] = (sample["server_ns"], batch["sent_ns"], arrived)

    def breakdown(
        self, stored: dict[tuple[str, str, int], float]
    ) -> dict[str, dict[str, float | None]]:
        """Per stage, p50 and p99 (ms) over the probes' samples seen both here and in InfluxDB.

        server: source time to the server's write (its tick); opcua_edge: to the edge's batch
        (OPC UA subscription, edge intake and batching); outbox_mqtt: to delivery by the broker
        (outbox commit, publish; with the central tier the site broker and its bridge too);
        historian_influx: to queryable in InfluxDB (the poller's view, so it includes up to
        POLL_S of polling).
        """
        parts: dict[str, list[float]] = {
            "server": [],
            "opcua_edge": [],
            "outbox_mqtt": [],
            "historian_influx": [],
        }
        for key, (server_ns, sent_ns, delivered) in self.stages.items():
            queryable = stored.get(key)
            if queryable is None:
                continue
            source_wall = key[2] / NS + self.offset_s[key[0]]
            parts["server"].append((server_ns / NS - source_wall) * 1000.0)
            parts["opcua_edge"].append((sent_ns - server_ns) / 1e6)
            parts["outbox_mqtt"].append((delivered - sent_ns / NS) * 1000.0)
            parts["historian_influx"].append((queryable - delivered) * 1000.0)
        out: dict[str, dict[str, float | None]] = {}
        for name, values in parts.items():
            values.sort()
            out[name] = {"p50": _percentile(values, 0.50), "p99": _percentile(values, 0.99)}
        return out

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# The raw MQTT baseline ----------------------------------------------------------------------
def _connect(broker: Mosquitto | dict[str, Any], user: str) -> mqtt.Client:
    """A connected MQTT 5 paho client, its network loop on a thread."""
    host, port, password = (
        (broker.host, broker.port, broker.passwords[user])
        if isinstance(broker, Mosquitto)
        else (broker["host"], broker["port"], broker["password"])
    )
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-{user}-{uuid.uuid4().hex[:6]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    c.username_pw_set(user, password)
    c.max_inflight_messages_set(1000)  # the edge's in-flight window
    connected = threading.Event()
    c.on_connect = lambda *args: connected.set()
    c.connect(host, port)
    c.loop_start()
    if not connected.wait(10):
        raise RuntimeError(f"MQTT user {user} could not connect")
    return c


def _raw_subscriber() -> None:
    """The baseline's subscriber (a child process): counts messages; told how many were sent."""
    config = json.loads(sys.stdin.readline())
    received = 0
    last = 0.0
    subscribed = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal received, last
        received += 1
        last = time.monotonic()  # CLOCK_MONOTONIC: the same clock in every process

    client = _connect(config, "operator")
    client.on_message = on_message
    client.on_subscribe = lambda *args: subscribed.set()
    client.subscribe(config["topic"], qos=1)
    if not subscribed.wait(10):
        raise SystemExit("baseline: no SUBACK")
    print("ready", flush=True)
    sent = int(sys.stdin.readline().split()[1])
    deadline = time.monotonic() + 30
    while received < sent and time.monotonic() < deadline:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"received": received, "last": last}), flush=True)


def raw_mqtt_rate(broker: Mosquitto, seconds: float) -> float:
    """QoS 1 messages per second from one paho publisher to one paho subscriber (processes)."""
    topic = f"pcmm/v1/bench-{uuid.uuid4().hex[:6]}/reply/operator"  # no service reads it
    sample = Sample(
        tag=f"{SITE}.synthetic_000.value_00",
        value=123.456,
        quality="good",
        source_ns=time.time_ns(),
        server_ns=0,
        seq=1,
    )
    payload = encode_batch(TelemetryBatch(SITE, "synthetic_000", time.time_ns(), (sample,)))
    config = {
        "host": broker.host,
        "port": broker.port,
        "password": broker.passwords["operator"],
        "topic": topic,
    }
    with subprocess.Popen(
        [sys.executable, "-m", "bench.pipeline", "--raw-subscriber"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps(config) + "\n")
        child.stdin.flush()
        if child.stdout.readline().strip() != "ready":
            raise SystemExit("baseline: the subscriber did not start")
        acked = 0

        def on_publish(*args: object) -> None:
            nonlocal acked
            acked += 1

        publisher = _connect(broker, "edge")
        publisher.on_publish = on_publish
        sent = 0
        start = time.monotonic()
        deadline = start + seconds
        while time.monotonic() < deadline:
            if sent - acked >= BASELINE_BACKLOG:  # bounds paho's in-memory queue
                time.sleep(0.001)
                continue
            publisher.publish(topic, payload, qos=1)
            sent += 1
        child.stdin.write(f"sent {sent}\n")
        child.stdin.flush()
        result = json.loads(child.stdout.readline())
        publisher.disconnect()
        publisher.loop_stop()
    if result["received"] < sent:
        print(f"baseline: {sent - result['received']} of {sent} did not arrive", file=sys.stderr)
    return float(result["received"]) / (float(result["last"]) - start)


# The run -------------------------------------------------------------------------------------
def _wait(check: Any, timeout: float, what: str, services: list[Service]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        for service in services:
            if service.proc is not None and service.proc.poll() is not None:
                tail = service.text()[-3000:]
                raise SystemExit(
                    f"{service.log.name}: exited with {service.proc.returncode}\n{tail}"
                )
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _brokers(
    stack: ExitStack, sites: list[str], central: bool
) -> tuple[Mosquitto, dict[str, Mosquitto]]:
    """The historians' broker and each site's: one for all, or the central tier (a central
    broker, and each site's own bridged to it: deploy/mosquitto/bridge.conf)."""
    if not central:
        broker = stack.enter_context(running_mosquitto())
        return broker, dict.fromkeys(sites, broker)
    hub, own = make_central_tier(sites)
    stack.enter_context(running_mosquitto(hub))  # first: the bridges find it at once
    for site in sites:
        stack.enter_context(running_mosquitto(own[site]))
    return hub, own


def run(args: argparse.Namespace) -> dict[str, Any]:
    sites = [f"site{i}" for i in range(1, args.sites + 1)]
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pipeline-")))
        hub, site_brokers = _brokers(stack, sites, args.central)
        influx = stack.enter_context(running_influxdb())
        raw = raw_mqtt_rate(hub, args.baseline_seconds)
        print(f"raw MQTT baseline: {raw:,.0f} msg/s", file=sys.stderr)

        servers: dict[str, ServerChild] = {}
        for site in sites:
            servers[site] = ServerChild(args.tags, args.rate, args.seconds, folder, site)
            stack.callback(servers[site].close)
        instances: list[int | None] = [1, 2] if args.central else [None]
        hist_settings = [
            historian_settings(hub, influx, folder, args.flush_interval, n) for n in instances
        ]
        historians = []
        for settings in hist_settings:
            historian = Service(
                [plant_executable(), "bridge", "historian"],
                service_env("PLANT_HISTORIAN_", settings),
                folder / f"{settings.mqtt_client_id.replace('-bench', '')}.log",
            )
            stack.callback(historian.stop, SERVICE_STOP_S)
            historians.append(historian)
        edge_sets = {
            site: edge_settings(servers[site], site_brokers[site], folder, args.edge_interval)
            for site in sites
        }
        edges = []
        for site in sites:
            log = folder / ("edge.log" if len(sites) == 1 else f"edge-{site}.log")
            edge = Service(
                [sys.executable, "-m", "bridge.edge"],
                service_env("PLANT_EDGE_", edge_sets[site]),
                log,
            )
            stack.callback(edge.stop, SERVICE_STOP_S)
            edges.append(edge)
        services = [*historians, *edges]

        offset_s = {site: float(servers[site].ask("mark")["offset_s"]) for site in sites}
        sampled = [probe for site in sites for probe in probes(args.tags, site)]
        poller = LatencyPoller(influx, sampled, offset_s)
        poller.start(after_ns=0)
        stack.callback(poller.stop)
        at_broker = BrokerProbe(hub, sampled, offset_s)
        stack.callback(at_broker.stop)
        _wait(poller.seen_all, READY_TIMEOUT_S, "every sampled tag in InfluxDB", services)
        time.sleep(WARMUP_S)

        procs: dict[str, list[int]] = {
            "server": [server.proc.pid for server in servers.values()],
            "edge": [edge.pid for edge in edges],
            "historian": [historian.pid for historian in historians],
            "mosquitto": sorted({broker.pid for broker in site_brokers.values()}),
            "influxd": [influx.pid],
        }
        if args.central:
            procs["mosquitto_central"] = [hub.pid]
        cpu0 = {name: sum(cpu_s(pid) for pid in pids) for name, pids in procs.items()}
        bench_cpu0 = time.process_time()
        wall0 = time.time()
        first = {site: servers[site].ask("mark") for site in sites}
        for site in sites:
            poller.window[site] = at_broker.window[site] = (first[site]["plant_ns"], 2**62)
        time.sleep(args.seconds)
        last = {site: servers[site].ask("mark") for site in sites}
        for site in sites:
            window = (first[site]["plant_ns"], last[site]["plant_ns"])
            poller.window[site] = at_broker.window[site] = window
        walls = {site: last[site]["wall"] - first[site]["wall"] for site in sites}
        wall = time.time() - wall0
        cpu = {
            name: 100.0 * (sum(cpu_s(pid) for pid in pids) - cpu0[name]) / wall
            for name, pids in procs.items()
        }
        cpu["bench"] = 100.0 * (time.process_time() - bench_cpu0) / wall

        truth: dict[str, dict[str, list[int]]] = {}
        for site in sites:
            window = servers[site].ask(f"truth {first[site]['plant_ns']} {last[site]['plant_ns']}")
            truth[site] = {tag: times for tag, times in window.items() if times}
        drain_start = time.monotonic()
        progress = (time.monotonic(), -1)
        while True:
            counted = {
                site: count(
                    truth[site],
                    influx_times_of(
                        influx, truth[site], first[site]["plant_ns"], last[site]["plant_ns"], site
                    ),
                )
                for site in sites
            }
            lost = sum(c.lost for c in counted.values())
            stored = sum(c.expected - c.lost for c in counted.values())
            now = time.monotonic()
            if stored > progress[1]:
                progress = (now, stored)
            if lost == 0 or now - progress[0] > DRAIN_IDLE_S or now - drain_start > DRAIN_MAX_S:
                break
            time.sleep(1.0)
        drain_s = time.monotonic() - drain_start
        for service in services:  # what went wrong, if anything, for the reader of stderr
            for line in service.log.read_text(errors="replace").splitlines():
                if " WARNING " in line or " ERROR " in line:
                    print(f"{service.log.name}: {line}", file=sys.stderr)
        time.sleep(2 * POLL_S)  # the poller's view of the last points
        poller.stop()

    per_site: dict[str, dict[str, Any]] = {}
    for site in sites:
        c, latencies = counted[site], sorted(poller.latencies_ms.get(site, []))
        per_site[site] = {
            "expected": c.expected,
            "stored": c.expected - c.lost,
            "extra": c.extra,
            "samples_per_s": round((c.expected - c.lost) / walls[site], 1),
            "lost": c.lost,
            "p50_ms": _percentile(latencies, 0.50),
            "p99_ms": _percentile(latencies, 0.99),
        }
    expected = sum(c.expected for c in counted.values())
    extra = sum(c.extra for c in counted.values())
    latencies = sorted(ms for values in poller.latencies_ms.values() for ms in values)
    broker_latencies = sorted(at_broker.latencies_ms)
    samples_per_s = sum(float(site["samples_per_s"]) for site in per_site.values())
    first_edge = edge_sets[sites[0]]
    out: dict[str, Any] = {
        "bench": "pipeline",
        "mode": args.mode,
        "tags": args.tags,
        "rate_hz": args.rate,
        "sites": args.sites,
        "central": args.central,
        "seconds": round(max(walls.values()), 2),
        "cpus": os.cpu_count(),
        "expected": expected,
        "stored": expected - lost,
        "extra": extra,
        "offered_per_s": round(sum(c.expected / walls[s] for s, c in counted.items()), 1),
        "drain_s": round(drain_s, 1),
        "latency_points": len(latencies),
        "latency_poll_ms": POLL_S * 1000,
        "load_1min": round(os.getloadavg()[0], 2),
        "settings_changed": {
            "opcua": servers[sites[0]].settings,
            "edge": differing(first_edge),
            "historian": differing(hist_settings[0]),
        },
        "broker_p50_ms": _percentile(broker_latencies, 0.50),
        "broker_p99_ms": _percentile(broker_latencies, 0.99),
        "stages_ms": at_broker.breakdown(poller.arrivals),
        "cpu_pct": {name: round(value, 1) for name, value in cpu.items()},
        "samples_per_s": round(samples_per_s, 1),
        "lost": lost,
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
        "raw_mqtt_per_s": round(raw, 1),
        "ratio": round(samples_per_s / raw, 3) if raw else None,
    }
    if len(sites) > 1:
        out["per_site"] = per_site
    return out


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=sorted(PRESETS), default="throughput")
    parser.add_argument("--tags", type=int, default=0, help="tags in all (0: the mode's preset)")
    parser.add_argument("--rate", type=float, default=0.0, help="publications/s (0: preset)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window, s")
    parser.add_argument("--baseline-seconds", type=float, default=BASELINE_S)
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=None,
        help="historian: wait this long for a partial batch instead of writing each burst, s",
    )
    parser.add_argument(
        "--edge-interval",
        type=float,
        default=None,
        help="edge OPC UA publishing and batch interval, s (default: the edge's)",
    )
    parser.add_argument(
        "--sites", type=int, default=1, help="sites: an OPC UA server and an edge each"
    )
    parser.add_argument(
        "--central",
        action="store_true",
        help="the central tier: each site its own broker bridged to a central one, where two "
        "historians share one subscription",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--site", default=SITE, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--raw-subscriber", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    preset_tags, preset_rate = PRESETS[args.mode]
    args.tags = args.tags or preset_tags
    args.rate = args.rate or preset_rate
    intervals = [v for v in (args.flush_interval, args.edge_interval) if v is not None]
    if args.rate <= 0 or args.seconds <= 0 or args.tags < 0 or min(intervals, default=1) <= 0:
        parser.error("--rate, --seconds and the intervals must be above 0, --tags at least 0")
    if args.sites < 1:
        parser.error("--sites must be at least 1")
    if args.raw_subscriber:
        _raw_subscriber()
        return
    if args.serve:
        asyncio.run(_serve(args.tags, args.rate, args.seconds, args.folder, args.site))
        return
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
