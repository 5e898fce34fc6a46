"""Benchmark: a soak test, a day of plant time through the whole loop at an accelerated speed.

    python -m bench.soak [--hours 24] [--speed 120] [--sample-s 5]

Scenario: the services `plant demo` runs, started by its own code (apps/demo/services.py and
`run_demo`: generated secrets, Mosquitto from deploy/mosquitto, the twin behind its OPC UA
server at `--speed`, the edge, the supervisory controller and the historian, each its own
process, health-gated), the historian writing to InfluxDB 1.x from `testkit` through its
test-only /api/v2/write proxy (as bench.pipeline and the acceptance test do). The plant runs
undisturbed for `--hours` of plant time; the controller acts as it sees fit. Prints one JSON
object last.

Counting lost samples, by chunks. A day is too much for the server's history (24 h x 69 tags
at one sample per tick, and the memory it takes would itself look like a leak), so the run is
cut into chunks of CHUNK_S plant seconds, and each chunk is counted on its own, while its
samples are still in the server's history (PLANT_OPCUA_HISTORY_WINDOW_S = HISTORY_WINDOW_S,
several chunks long, filled within the warm-up so it does not count as growth):

- the truth: once the plant clock (the source time of `line.state`, stamped every plant
  second, as `plant fault status` reads it) is SETTLE_S past a chunk's end, every sample the
  server published with a source time in the chunk (low, high] is read back with OPC UA
  HistoryRead, per tag, and kept here until the chunk is settled. A chunk read too late (its
  start older than the history window less a margin) would undercount and is reported as
  `unverified` instead;
- the store: per tag, the source times InfluxDB holds in (low, high], from the `<name>_seq`
  fields of `telemetry` and `truth`;
- `lost` are published samples InfluxDB lacks, `extra` stored points never published,
  `duplicates` a tag's point stored twice at one source time (in both measurements), counted
  by testkit/loss.py as the acceptance test counts. A chunk with something missing is counted
  again later; after the run the last chunks are drained until nothing is missing or nothing
  new arrives for DRAIN_IDLE_S.

The first chunk starts at the first `line.state` point InfluxDB holds after every service was
healthy (the edge has subscribed). The edge's sample sequence numbers are not used to count
losses (testkit/loss.py says why); `mqtt_redelivered` does use them: a subscriber here (user
`operator`, QoS 1, telemetry only: it may not read the truth, so `mqtt_samples` is below
`samples`, and it counts from the start) counts samples delivered more than once (harmless,
the historian's writes are idempotent; non-zero after an edge reconnect replays its window).

Memory: VmRSS from /proc/<pid>/status of every process (the plant services, Mosquitto,
influxd) every `--sample-s` wall seconds. `after_warmup` is the first reading once
WARMUP_FRACTION of the plant hours have passed, `end` the last one before the drain,
`growth_pct` between the two; the goal is under 10 % for the plant services and Mosquitto
(influxd holds the growing data set itself and is reported, not judged). CPU is % of one core
over the whole run. `line` says what the plant did meanwhile (from the stored `line.state`):
the share of time producing or diverting, the state changes and the last state; a line that
faulted early still soaks the pipeline, but with fewer samples (Bad press readings).
The default speed keeps a day within about 13 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from asyncua import Client, ua
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from apps.demo.cli import run_demo
from apps.demo.services import Demo, Influx, make_sites, stop_services
from apps.launcher import Child, free_port
from apps.servers import find_mosquitto
from bridge.operator import CLOCK_TAG
from core.layout import load_layout
from core.tags import LINE_STATES, build_registry
from core.timebase import to_ns
from core.topics import SiteTopics
from testkit.loss import count, influx_times, published_times
from testkit.servers import InfluxDB, running_influxdb

SITE = "site1"
NAMESPACE = "urn:pcmm-twin:opcua"
DEFAULT_SPEED = 120.0  # plant s per wall s: 24 h in 12 min
CHUNK_S = 1800.0  # plant s counted at a time
SETTLE_S = 120.0  # plant s after a chunk's end before it is first counted
HISTORY_WINDOW_S = 7200.0  # the server's history (plant s): several chunks, within the warm-up
HISTORY_MARGIN_S = 600.0  # a chunk must be read this long before it leaves the history
WARMUP_FRACTION = 0.10
POLL_S = 1.0  # wall s between rounds of the main loop
RECOUNT_S = 5.0  # wall s between two counts of a chunk still missing samples
READY_TIMEOUT_S = 120.0
DRAIN_IDLE_S = 30.0  # wall s without progress before the drain gives up
DRAIN_MAX_S = 300.0
RSS_GOAL_PCT = 10.0
JUDGED = ("opcua", "edge", "controller", "historian", "mosquitto")
NS = 1_000_000_000


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# Processes ------------------------------------------------------------------------------------
def rss_mb(pid: int) -> float | None:
    """VmRSS of a process in MB (Linux /proc), None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Memory:
    """RSS readings of one process: (plant hours since the start, MB)."""

    pid: int
    readings: list[tuple[float, float]] = field(default_factory=list)
    after_warmup: float | None = None

    def sample(self, plant_h: float, warmup_h: float) -> None:
        mb = rss_mb(self.pid)
        if mb is None:
            return
        self.readings.append((plant_h, mb))
        if self.after_warmup is None and plant_h >= warmup_h:
            self.after_warmup = mb

    def report(self) -> dict[str, float | None]:
        end = self.readings[-1][1] if self.readings else None
        base = self.after_warmup
        growth = 100.0 * (end - base) / base if end is not None and base else None
        return {
            "start": _round(self.readings[0][1] if self.readings else None),
            "after_warmup": _round(base),
            "end": _round(end),
            "max": _round(max((mb for _, mb in self.readings), default=None)),
            "growth_pct": _round(growth),
        }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


# Counting --------------------------------------------------------------------------------------
@dataclass
class Chunk:
    """Source times (low, high] in ns, and its count once compared."""

    low: int
    high: int
    truth: dict[str, set[int]] | None = None
    expected: int = 0
    lost: int = 0
    extra: int = 0
    duplicates: int = 0
    missing: list[tuple[str, int]] = field(default_factory=list)
    settled: bool = False
    unverified: bool = False
    counted_at: float = 0.0  # monotonic time of the last count

    def count(self, stored: dict[str, list[int]]) -> None:
        """Compare the chunk's truth with what InfluxDB holds; fills in its count."""
        assert self.truth is not None
        tally = count(self.truth, stored)
        self.expected, self.lost = tally.expected, tally.lost
        self.extra, self.duplicates = tally.extra, tally.duplicates
        self.missing = tally.missing_examples[:10]
        self.settled = tally.lost == 0


class Redeliveries:
    """Telemetry samples the broker delivered more than once (same edge sequence number)."""

    def __init__(self, port: int, password: str) -> None:
        self.seen = bytearray()
        self.samples = 0
        self.redelivered = 0
        self.errors = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"soak-operator-{uuid.uuid4().hex[:6]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.username_pw_set("operator", password)
        subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_connect = lambda client, *args: client.subscribe(
            SiteTopics(SITE).all_telemetry, qos=1
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise SystemExit("the soak's MQTT subscriber could not subscribe")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            samples = json.loads(msg.payload)["samples"]
        except (ValueError, KeyError):
            self.errors += 1
            return
        with self._lock:
            for sample in samples:
                seq = int(sample["seq"])
                if seq >= len(self.seen):
                    self.seen.extend(bytes(max(seq + 1 - len(self.seen), 1 << 16)))
                self.samples += 1
                if self.seen[seq]:
                    self.redelivered += 1
                self.seen[seq] = 1

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# The run ---------------------------------------------------------------------------------------
class Soak:
    """Drives the counting and the memory readings against running services."""

    def __init__(
        self,
        args: argparse.Namespace,
        demo: Demo,
        influx: InfluxDB,
        children: list[Child],
    ) -> None:
        self.args = args
        self.demo = demo
        self.influx = influx
        self.children = children
        self.site = demo.sites[0]
        self.registry = build_registry(load_layout(None).modules)  # site1: the nominal pod
        self.chunks: list[Chunk] = []
        self.pids = {c.name.removesuffix(f"-{SITE}"): c.pid for c in children}
        self.pids["influxd"] = influx.pid
        self.memory = {name: Memory(pid) for name, pid in self.pids.items()}

    def check_alive(self) -> None:
        for child in self.children:
            if not child.running:
                raise SystemExit(f"{child.name} exited during the soak:\n{child.tail()}")

    async def plant_ns(self, client: Client, ns: int) -> int:
        node = client.get_node(ua.NodeId(f"{SITE}.{CLOCK_TAG}", ns))
        return to_ns((await node.read_data_value()).SourceTimestamp)

    async def truth(self, client: Client, ns: int, chunk: Chunk) -> dict[str, set[int]]:
        """Every sample the server published in the chunk, per tag: source times (ns)."""
        start = datetime.fromtimestamp(chunk.low / NS, UTC)
        end = datetime.fromtimestamp(chunk.high / NS + 1.0, UTC)
        read = await published_times(client, ns, SITE, self.registry.values(), start, end)
        return {
            tag: {t for t in times if chunk.low < t <= chunk.high} for tag, times in read.items()
        }

    async def first_point(self, after: int) -> int:
        """The source time of the first `line.state` point InfluxDB holds after `after`."""
        module, name = CLOCK_TAG.split(".")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            self.check_alive()
            rows = self.influx.query(
                f"SELECT \"{name}_seq\" FROM telemetry WHERE site = '{SITE}' "
                f"AND module = '{module}' AND time > {after} LIMIT 1"
            )
            if rows:
                return int(rows[0]["time"])
            if time.monotonic() > deadline:
                raise SystemExit(f"no {CLOCK_TAG} in InfluxDB after {READY_TIMEOUT_S:g} s")
            await asyncio.sleep(0.5)

    async def count_due(self, client: Client, ns: int, now: int, force: bool = False) -> None:
        for chunk in self.chunks:
            if chunk.settled or chunk.unverified:
                continue
            if not force and time.monotonic() - chunk.counted_at < RECOUNT_S:
                continue
            if chunk.truth is None:
                if (now - chunk.low) / NS > HISTORY_WINDOW_S - HISTORY_MARGIN_S:
                    chunk.unverified = True
                    say(f"chunk at {chunk.low}: read too late for the server's history")
                    continue
                chunk.truth = await self.truth(client, ns, chunk)
            stored = await asyncio.to_thread(influx_times, self.influx, SITE, chunk.low, chunk.high)
            chunk.count(stored)
            chunk.counted_at = time.monotonic()
            if chunk.settled:
                chunk.truth = None  # counted: the memory goes back

    async def run(self) -> dict[str, Any]:
        args = self.args
        plant_span = int(args.hours * 3600 * NS)
        warmup_h = args.hours * WARMUP_FRACTION
        redeliveries = Redeliveries(self.demo.mqtt_port, self.demo.mqtt_password("operator"))
        try:
            async with Client(self.site.opcua_url, timeout=30) as client:
                ns = await client.get_namespace_index(NAMESPACE)
                t0 = await self.first_point(await self.plant_ns(client, ns))
                end = t0 + plant_span
                say(f"counting from plant time {datetime.fromtimestamp(t0 / NS, UTC)}")
                wall0 = time.monotonic()
                plant0 = await self.plant_ns(client, ns)
                cpu0 = {name: cpu_s(pid) for name, pid in self.pids.items()}
                next_low = t0
                next_sample = 0.0
                last_note = 0.0
                now = t0
                while True:
                    self.check_alive()
                    now = await self.plant_ns(client, ns)
                    plant_h = (now - t0) / NS / 3600
                    if time.monotonic() >= next_sample:
                        for memory in self.memory.values():
                            memory.sample(plant_h, warmup_h)
                        next_sample = time.monotonic() + args.sample_s
                    while next_low < end and now >= min(next_low + CHUNK_S * NS, end) + (
                        SETTLE_S * NS
                    ):
                        high = min(next_low + int(CHUNK_S * NS), end)
                        self.chunks.append(Chunk(next_low, high))
                        next_low = high
                    await self.count_due(client, ns, now)
                    if time.monotonic() - last_note >= 60:
                        last_note = time.monotonic()
                        say(self.progress(plant_h))
                    if next_low >= end:
                        break
                    await asyncio.sleep(POLL_S)
                for memory in self.memory.values():
                    memory.sample(plant_h, warmup_h)
                wall = time.monotonic() - wall0
                cpu = {
                    name: round(100.0 * (cpu_s(pid) - cpu0[name]) / wall, 1)
                    for name, pid in self.pids.items()
                }
                plant_elapsed = (now - plant0) / NS

                drain0 = time.monotonic()
                progress = (drain0, -1)
                while True:
                    await self.count_due(client, ns, now, force=True)
                    stored = sum(c.expected - c.lost for c in self.chunks)
                    if stored > progress[1]:
                        progress = (time.monotonic(), stored)
                    pending = [c for c in self.chunks if not (c.settled or c.unverified)]
                    idle = time.monotonic() - progress[0]
                    if (
                        not pending
                        or idle > DRAIN_IDLE_S
                        or time.monotonic() - drain0 > DRAIN_MAX_S
                    ):
                        break
                    await asyncio.sleep(2.0)
                drain_s = time.monotonic() - drain0
                line = await asyncio.to_thread(self.line_summary, t0, end)
        finally:
            redeliveries.stop()
        return {**self.result(wall, plant_elapsed, drain_s, cpu, redeliveries), "line": line}

    def line_summary(self, low: int, high: int) -> dict[str, Any]:
        """What the plant did meanwhile: the share of `line.state` points producing, the last."""
        module, name = CLOCK_TAG.split(".")
        where = f"site = '{SITE}' AND module = '{module}' AND time > {low} AND time <= {high}"
        rows = self.influx.query(f'SELECT "{name}" FROM telemetry WHERE {where}')
        states = [LINE_STATES[r[name]] for r in rows if isinstance(r.get(name), int)]
        producing = sum(1 for state in states if state in ("producing", "diverting"))
        return {
            "producing_pct": round(100.0 * producing / len(states), 1) if states else None,
            "end_state": states[-1] if states else None,
            "changes": sum(1 for a, b in itertools.pairwise(states) if a != b),
        }

    def progress(self, plant_h: float) -> str:
        counted = [c for c in self.chunks if c.settled or c.counted_at]
        lost = sum(c.lost for c in counted)
        rss = ", ".join(
            f"{name} {m.readings[-1][1]:.0f}" for name, m in self.memory.items() if m.readings
        )
        return (
            f"plant {plant_h:5.2f} h: {len(self.chunks)} chunks, "
            f"{sum(c.expected for c in counted)} samples, {lost} missing; RSS MB {rss}"
        )

    def result(
        self,
        wall: float,
        plant_elapsed: float,
        drain_s: float,
        cpu: dict[str, float],
        redeliveries: Redeliveries,
    ) -> dict[str, Any]:
        chunks = self.chunks
        counted = [c for c in chunks if not c.unverified]
        rss = {name: m.report() for name, m in self.memory.items()}
        growth = [rss[name]["growth_pct"] for name in JUDGED if name in rss]
        lost = sum(c.lost for c in counted)
        return {
            "bench": "soak",
            "plant_hours": round(self.args.hours, 3),
            "speed": self.args.speed,
            "speed_effective": round(plant_elapsed / wall, 1),
            "cpus": os.cpu_count(),
            "chunks": len(chunks),
            "chunk_plant_s": CHUNK_S,
            "unverified_chunks": len(chunks) - len(counted),
            "samples": sum(c.expected for c in counted),
            "stored": sum(c.expected - c.lost for c in counted),
            "lost": lost,
            "extra": sum(c.extra for c in counted),
            "duplicates": sum(c.duplicates for c in counted),
            "missing_examples": [m for c in counted for m in c.missing][:10],
            "mqtt_samples": redeliveries.samples,
            "mqtt_redelivered": redeliveries.redelivered,
            "drain_s": round(drain_s, 1),
            "warmup_plant_hours": round(self.args.hours * WARMUP_FRACTION, 3),
            "rss_mb": rss,
            "cpu_pct": cpu,
            "goal": {
                "lost_zero": lost == 0 and len(counted) == len(chunks),
                "rss_growth_under_10pct": all(g is not None and g < RSS_GOAL_PCT for g in growth),
            },
            "wall_s": round(wall, 1),
        }


@contextmanager
def demo_services(name: str, influx: InfluxDB, speed: float) -> Iterator[tuple[Demo, list[Child]]]:
    """The services `plant demo` runs for one site (controller in charge, the historian writing
    to `influx`), healthy, and what was started; stopped in order and removed afterwards."""
    state = Path(tempfile.mkdtemp(prefix=f"pcmm-{name}-"))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PLANT_")}
    base_env.update(
        PLANT_OPCUA_HISTORY_WINDOW_S=str(HISTORY_WINDOW_S),
        PLANT_OPCUA_HISTORY_MAX_SAMPLES="100000",
    )
    demo = Demo(
        state=state,
        sites=make_sites(1),
        mqtt_port=free_port(),
        speed=speed,
        controller=True,
        influx=Influx(influx.v2_url, f"{name}-token", "pcmm", influx.db),
        base_env=base_env,
    )
    started: list[Child] = []
    try:
        demo.prepare()
        run_demo(demo, find_mosquitto(None), threading.Event(), started, say)
        yield demo, started
    finally:
        stop_services(started)
        demo.cleanup()
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=24.0, help="plant hours to run")
    parser.add_argument(
        "--speed", type=float, default=DEFAULT_SPEED, help="plant s per wall s (10-1000)"
    )
    parser.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling period, wall s")
    args = parser.parse_args()
    if args.hours <= 0 or not 10 <= args.speed <= 1000 or args.sample_s <= 0:
        parser.error("--hours and --sample-s must be above 0, --speed within 10-1000")

    started_wall = time.monotonic()
    with ExitStack() as stack:
        influx = stack.enter_context(running_influxdb())
        demo, started = stack.enter_context(demo_services("soak", influx, args.speed))
        plant = [c for c in started if c.name != "mosquitto"]
        broker = [c for c in started if c.name == "mosquitto"]
        result = asyncio.run(Soak(args, demo, influx, [*broker, *plant]).run())
        result["total_wall_s"] = round(time.monotonic() - started_wall, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
