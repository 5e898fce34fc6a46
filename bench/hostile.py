"""Benchmark: a campaign of hostile input against the whole running loop (issue 12).

    python -m bench.hostile [--speed 10]

What it runs: the services `plant demo` runs, started as bench.soak starts them (`run_demo`:
generated secrets, Mosquitto with the deployed configuration and ACL, the twin behind its OPC UA
server, the edge, the supervisory controller and the historian), the historian writing to
InfluxDB 1.6.7 through the test-only /api/v2/write proxy in 2.x mode (a batch with one bad line
is refused whole). Like bench.soak, it takes InfluxDB and the proxy from `testkit` (the
one place that knows how to start them).

The campaign: every kind in KINDS once, each published or written with the credentials of the
real user the ACL lets write there (`operator` for commands and mode switches, `edge` for
telemetry and the twin's audit events, `controller` for forged audit records, an anonymous OPC
UA session for a huge write), interleaved with normal traffic: the plant's own telemetry flows
all along, and after every kind a good setpoint command must be answered through the edge and
every service must still be running. The kinds are a concise list of our own, one of each
kind of tests/integration/test_{edge,historian,opcua,controller}_hostile.py and
test_audit_integrity.py (those tests build theirs from tests/support and testkit; the fuzz
test's random garbage is not repeated here).

What it counts, printed as one JSON object last:
- `kinds`: hostile kinds sent;
- `services_alive`: every service process still running after every kind and at the end;
- `good_lost`: samples the twin's server published (read back with OPC UA HistoryRead, its own
  record) between the first stored point and the end of the campaign that InfluxDB lacks,
  counted as bench.soak counts them, plus good commands left unanswered;
- `dead_lettered`: letters in the historian's and the edge's dead-letter stores (the edge's is
  `<spool>.deadletters.sqlite`); every message expected there (EXPECT_LETTER) must be in it,
  whole, with a reason, else `services_alive`/`audit_intact` stay true but `missing_letters`
  (on stderr) names it and the exit code is 1;
- `audit_intact`: `plant audit verify` passes for the twin's and the controller's trails.
Exit code 0 only when every goal holds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from asyncua import Client, ua
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from apps.demo.services import Demo
from apps.launcher import Child
from bench.soak import SITE, Chunk, Soak, demo_services
from bridge.deadletter import DeadLetter, read_deadletters
from bridge.metrics import Metrics, encode_metrics
from core.audit_chain import AuditChain
from core.payload import Event, Sample, TelemetryBatch, encode_batch, encode_event
from testkit.servers import InfluxDB, running_influxdb

DEFAULT_SPEED = 10.0
KB, MB = 1024, 1024 * 1024
T = f"pcmm/v1/{SITE}"
REPLY_TIMEOUT_S = 20.0
COUNT_TIMEOUT_S = 60.0
T0 = 1_700_000_000_000_000_000  # far from the plant's own clock: no hostile point near its data
FAR = T0 + 400 * 86_400 * 10**9  # another InfluxDB shard (field types are per shard)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# The hostile kinds ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    """One hostile message: who sends it, where, and whether it must end up as a dead letter."""

    name: str
    user: str  # MQTT user, or "opcua" for an anonymous OPC UA write
    topic: str
    payload: bytes
    response_topic: str | None = None
    retain: bool = False
    dead_letter: bool = False  # the historian must keep it, whole, with its reason


def _setpoint(tag: str, value: Any, reason: str = "hostile") -> bytes:
    body = {"v": 1, "kind": "setpoint", "tag": tag, "value": value, "reason": reason}
    return json.dumps(body).encode()


def _raw(payload: bytes, key: str, raw: str, where: Callable[[Any], Any] = lambda o: o) -> bytes:
    """`payload` with the value of `key` (in the object `where` picks) replaced by raw text."""
    obj = json.loads(payload)
    where(obj)[key] = "@@RAW@@"
    return json.dumps(obj, separators=(",", ":")).replace('"@@RAW@@"', raw, 1).encode()


def _first(obj: Any) -> Any:
    return obj["samples"][0]


def _values(obj: Any) -> Any:
    return obj["values"]


def _feeder() -> bytes:
    samples = tuple(
        Sample(
            tag="api_feeder.hopper_mass",
            value=2.0 + k,
            quality="good",
            source_ns=T0 + k,
            server_ns=T0 + k + 1000,
            seq=k,
        )
        for k in range(2)
    )
    return encode_batch(TelemetryBatch(SITE, "api_feeder", time.time_ns(), samples))


def _audit(seq: int, time_ns: int, **fields: Any) -> Event:
    values: dict[str, Any] = {"user": "mallory", "old": 1.5, "action": "write"} | fields
    event = Event(site=SITE, kind="audit", seq=seq, time_ns=time_ns, source="twin", **values)
    return AuditChain("hostile-bench").seal(event)


def kinds() -> list[Kind]:
    """Every hostile kind once (edge, historian, OPC UA, controller, audit integrity)."""
    fill = f"{T}/command/setpoint/operator"
    tele, audit, metrics = (
        f"{T}/api_feeder/telemetry",
        f"{T}/events/audit/twin",
        f"{T}/metrics/edge",
    )
    mode = f"{T}/mode/controller"
    feeder, event = _feeder(), encode_event(_audit(900, T0 + 900))
    report = encode_metrics(
        Metrics(service="edge", site=SITE, instance="edge-1", time_ns=T0, values={"received": 1.0})
    )
    huge, deep = "9" * 400, "[" * 50_000 + "]" * 50_000
    forged = _audit(1, T0 + 1, user="alice via edge", accepted=True,
                    result="accepted, approved by QA")  # fmt: skip
    edge: list[Kind] = [
        Kind(
            name="edge: a wildcard response topic",
            user="operator",
            topic=fill,
            payload=_setpoint("press.fill_depth_sp", 99.0),
            response_topic="pcmm/v1/#",
        ),
        Kind(
            name="edge: another user's reply topic",
            user="operator",
            topic=fill,
            payload=_setpoint("press.fill_depth_sp", 99.0),
            response_topic=f"{T}/reply/controller",
        ),
        Kind(
            name="edge: a response topic of 10,000 characters",
            user="operator",
            topic=fill,
            payload=_setpoint("press.fill_depth_sp", 99.0),
            response_topic="x" * 10_000,
        ),
        Kind(
            "edge: a reason of 900 KiB",
            "operator",
            fill,
            _setpoint("press.fill_depth_sp", 9.0, "r" * (900 * KB)),
        ),
        Kind(
            "edge: a reason of 40,000 characters",
            "operator",
            fill,
            _setpoint("press.fill_depth_sp", 9.0, "r" * 40_000),
        ),
        Kind(
            "edge: a string setpoint of 900 KiB",
            "operator",
            fill,
            _setpoint("diverter.position_sp", "s" * (900 * KB)),
        ),
        Kind("edge: a tag id of 40,000 characters", "operator", fill, _setpoint("t" * 40_000, 1.0)),
        Kind(
            "edge: JSON nested 400,000 deep",
            "operator",
            fill,
            b"[" * (400 * KB) + b"]" * (400 * KB),
        ),
        Kind(
            "edge: a number of 5,000 digits",
            "operator",
            fill,
            b'{"v":1,"kind":"setpoint","tag":"press.fill_depth_sp","value":' + b"9" * 5000 + b"}",
        ),
        Kind(
            "edge: a number beyond any float",
            "operator",
            fill,
            b'{"v":1,"kind":"setpoint","tag":"press.fill_depth_sp","value":1' + b"0" * 400 + b"}",
        ),
        Kind("edge: invalid UTF-8", "operator", fill, b"\xff\xfe\xfd" * 1000),
        Kind(
            "edge: wrong types",
            "operator",
            fill,
            b'{"v":1,"kind":"setpoint","tag":["press"],"value":{"a":1}}',
        ),
        Kind(
            "edge: an unknown kind of 10,000 characters",
            "operator",
            f"{T}/command/{'k' * 10_000}/operator",
            b'{"v":1,"kind":"line","action":"start"}',
        ),
        Kind(
            "edge: a fault kind of 900 KiB",
            "operator",
            f"{T}/command/fault/operator",
            b'{"v":1,"kind":"fault","action":"inject","fault":"' + b"f" * (900 * KB) + b'"}',
        ),
    ]
    opcua = [
        Kind(
            "opcua: an anonymous write of a 2 MiB string",
            "opcua",
            "diverter.position_sp",
            b"w" * (2 * MB),
        )
    ]
    historian = [
        Kind(
            "historian: hundreds of digits in a value",
            "edge",
            tele,
            _raw(feeder, "value", huge, _first),
            dead_letter=True,
        ),
        Kind(
            "historian: hundreds of digits in a seq",
            "edge",
            audit,
            _raw(event, "seq", huge),
            dead_letter=True,
        ),
        Kind(
            "historian: hundreds of digits in a metric",
            "edge",
            metrics,
            _raw(report, "received", huge, _values),
            dead_letter=True,
        ),
        Kind(
            "historian: a float of 400 digits",
            "edge",
            tele,
            _raw(feeder, "value", huge + ".5", _first),
            dead_letter=True,
        ),
        Kind(
            "historian: 1e400",
            "edge",
            metrics,
            _raw(report, "received", "1e400", _values),
            dead_letter=True,
        ),
        Kind(
            "historian: NaN", "edge", tele, _raw(feeder, "value", "NaN", _first), dead_letter=True
        ),
        Kind(
            "historian: -Infinity", "edge", audit, _raw(event, "old", "-Infinity"), dead_letter=True
        ),
        Kind(
            "historian: deep nesting", "edge", tele, _raw(feeder, "samples", deep), dead_letter=True
        ),
        Kind(
            "historian: deep objects",
            "edge",
            audit,
            _raw(event, "new", '{"a":' * 20_000 + "1" + "}" * 20_000),
            dead_letter=True,
        ),
        Kind(
            "historian: a duplicate key",
            "edge",
            tele,
            feeder.replace(b'"v":1,', b'"v":1,"v":1,', 1),
            dead_letter=True,
        ),
        Kind(
            "historian: invalid UTF-8",
            "edge",
            audit,
            event.replace(b'"mallory"', b'"mall\xffory"'),
            dead_letter=True,
        ),
        Kind(
            "historian: a lone surrogate",
            "edge",
            audit,
            event.replace(b'"mallory"', b'"\\ud800mallory"'),
            dead_letter=True,
        ),
        Kind(
            "historian: a newline splitting a line",
            "edge",
            audit,
            event.replace(b'"twin"', b'"twin\\nx=1 2"'),
            dead_letter=True,
        ),
        Kind(
            "historian: a trailing newline in an instance",
            "edge",
            metrics,
            report.replace(b'"edge-1"', b'"edge-1\\n"'),
            dead_letter=True,
        ),
        Kind(
            "historian: time_ns = 2**63-1",
            "edge",
            audit,
            _raw(event, "time_ns", str(2**63 - 1)),
            dead_letter=True,
        ),
        Kind(
            "historian: a huge message",
            "edge",
            audit,
            _raw(event, "reason", json.dumps('"' * 500_000)),
            dead_letter=True,
        ),
        Kind(
            "historian: a line only InfluxDB refuses (field type conflict)",
            "edge",
            audit,
            encode_event(_audit(64, FAR, user="u", old="text")),
        ),
    ]
    controller = [
        Kind(
            "controller: a retained mode nested too deeply",
            "operator",
            mode,
            b"[" * 2000 + b"]" * 2000,
            retain=True,
        ),
        Kind(
            "controller: a retained mode with a number too long",
            "operator",
            mode,
            b'{"v": 1, "mode": "manual", "reason": ' + b"9" * 4000 + b"}",
            retain=True,
        ),
        Kind(
            "controller: a mode switch of 1e999",
            "operator",
            mode,
            b'{"v": 1e999, "mode": "manual"}',
            retain=True,
        ),
        Kind(
            "controller: a mode switch over its size limit",
            "operator",
            mode,
            b"manual" * 700,
            retain=True,
        ),
        Kind("controller: garbage as its reply", "edge", f"{T}/reply/controller", b"\xff" * 100),
    ]
    integrity = [
        Kind("audit: the controller forges a twin record on the twin's topic", "controller",
             audit, encode_event(forged)),  # the ACL drops it
        Kind("audit: the controller forges a twin record on its own topic", "controller",
             f"{T}/events/audit/controller", encode_event(forged), dead_letter=True),
    ]  # fmt: skip
    return [*edge, *opcua, *historian, *controller, *integrity]


# MQTT ----------------------------------------------------------------------------------------
class Publisher:
    """One MQTT 5 client of a real user; the operator's also collects its replies."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.replies: dict[bytes, dict[str, Any]] = {}
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"hostile-{user}-{uuid.uuid4().hex[:6]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.username_pw_set(user, password)
        ready = threading.Event()
        self.client.on_message = self._on_message
        if user == "operator":
            self.client.on_subscribe = lambda *args: ready.set()
            self.client.on_connect = lambda client, *args: client.subscribe(
                f"{T}/reply/operator", qos=1
            )
        else:
            self.client.on_connect = lambda *args: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not ready.wait(10):
            raise SystemExit(f"the bench's MQTT client for {user} could not connect")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        correlation = getattr(msg.properties, "CorrelationData", None)
        if correlation is not None:
            try:
                self.replies[bytes(correlation)] = json.loads(msg.payload)
            except ValueError:
                self.replies[bytes(correlation)] = {"accepted": False, "code": "garbled"}

    def publish(self, kind: Kind, correlation: bytes | None = None) -> bytes:
        correlation = correlation or uuid.uuid4().bytes
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if kind.response_topic is not None:
            props.ResponseTopic = kind.response_topic
        props.CorrelationData = correlation
        info = self.client.publish(
            kind.topic, kind.payload, qos=1, retain=kind.retain, properties=props
        )
        info.wait_for_publish(REPLY_TIMEOUT_S)
        return correlation

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# The campaign -----------------------------------------------------------------------------------
@dataclass
class Campaign:
    demo: Demo
    influx: InfluxDB
    children: list[Child]
    dead_letter_stores: list[Path]
    problems: list[str] = field(default_factory=list)
    good_sent: int = 0
    good_unanswered: int = 0

    def alive(self, after: str) -> bool:
        dead = [c.name for c in self.children if not c.running]
        if dead:
            self.problems.append(f"after {after}: {', '.join(dead)} not running")
        return not dead

    def good_command(self, operator: Publisher, value: float) -> None:
        """Normal traffic: a good setpoint command, answered through the edge."""
        topic = f"{T}/command/setpoint/operator"
        payload = _setpoint("press.fill_depth_sp", value, "good")
        good = Kind(
            name="good",
            user="operator",
            topic=topic,
            payload=payload,
            response_topic=f"{T}/reply/operator",
        )
        self.good_sent += 1
        correlation = operator.publish(good)
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while correlation not in operator.replies and time.monotonic() < deadline:
            time.sleep(0.05)
        reply = operator.replies.get(correlation)
        if reply is None or not reply.get("accepted"):
            self.good_unanswered += 1
            self.problems.append(f"good command {value}: {reply}")

    async def anonymous_write(self, kind: Kind) -> None:
        async with Client(self.demo.sites[0].opcua_url, timeout=30) as client:
            ns = await client.get_namespace_index("urn:pcmm-twin:opcua")
            node = client.get_node(ua.NodeId(f"{SITE}.{kind.topic}", ns))
            try:
                await node.write_value(ua.Variant(kind.payload.decode(), ua.VariantType.String))
            except ua.UaStatusCodeError:
                return
            self.problems.append(f"{kind.name}: accepted")

    def send_all(self, hostile: list[Kind]) -> bool:
        users = {k.user for k in hostile if k.user != "opcua"} | {"operator"}
        port = self.demo.mqtt_port
        clients = {u: Publisher(port, u, self.demo.mqtt_password(u)) for u in sorted(users)}
        alive = True
        try:
            # `old` an integer in the shard of FAR (on a site of its own: no trail of SITE's
            # is touched), so that the conflict kind's `old="text"` is refused by InfluxDB.
            conflict = f"events,kind=audit,site=hostile-seed,slot=0,source=twin old=1i {FAR}"
            assert self.influx.proxy is not None
            self.influx.proxy.mirror(conflict)
            self.influx.write(conflict)
            self.good_command(clients["operator"], 9.0)
            for i, kind in enumerate(hostile):
                say(f"hostile {i + 1}/{len(hostile)}: {kind.name}")
                if kind.user == "opcua":
                    asyncio.run(self.anonymous_write(kind))
                else:
                    clients[kind.user].publish(kind)
                self.good_command(clients["operator"], 9.5 if i % 2 else 9.0)
                alive = self.alive(kind.name) and alive
        finally:
            # No bad mode switch left retained for the next controller.
            clients["operator"].publish(
                Kind("clear", "operator", f"{T}/mode/controller", b"", retain=True)
            )
            for publisher in clients.values():
                publisher.stop()
        return alive

    def letters(self) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        for store in self.dead_letter_stores:
            if store.exists():
                out.extend(read_deadletters(store))
        return out

    def verify(self, source: str) -> bool:
        done = subprocess.run(
            [sys.executable, "-m", "apps.cli", "audit", "verify", "--site", SITE,
             "--source", source, "--url", self.influx.url, "--db", self.influx.db],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        say((done.stdout + done.stderr).strip())
        if done.returncode != 0:
            self.problems.append(f"audit verify {source}: {done.stderr.strip()}")
        return done.returncode == 0


async def count_lost(soak: Soak, run: Callable[[], bool]) -> tuple[bool, int, int]:
    """Runs the campaign between two plant times; (alive, samples lost, samples counted)."""
    async with Client(soak.site.opcua_url, timeout=30) as client:
        ns = await client.get_namespace_index("urn:pcmm-twin:opcua")
        t0 = await soak.first_point(await soak.plant_ns(client, ns))
        alive = await asyncio.to_thread(run)
        end = await soak.plant_ns(client, ns)
        soak.chunks = [Chunk(t0, end)]
        deadline = time.monotonic() + COUNT_TIMEOUT_S
        while True:
            await soak.count_due(client, ns, await soak.plant_ns(client, ns), force=True)
            chunk = soak.chunks[0]
            if chunk.settled or chunk.unverified or time.monotonic() > deadline:
                break
            await asyncio.sleep(2.0)
        lost = chunk.lost if not chunk.unverified else -1
        return alive, lost, chunk.expected


def run(speed: float, hostile: list[Kind] | None = None) -> dict[str, Any]:
    """The whole campaign against freshly started services; the result as printed."""
    hostile = kinds() if hostile is None else hostile
    started_wall = time.monotonic()
    with ExitStack() as stack:
        influx = stack.enter_context(running_influxdb())
        assert influx.proxy is not None
        influx.proxy.whole_batch = True  # as InfluxDB 2.x: one bad line refuses its whole batch
        demo, started = stack.enter_context(demo_services("hostile", influx, speed))
        state = demo.state
        campaign = Campaign(
            demo,
            influx,
            list(started),
            [
                state / "historian" / "spool.deadletters.sqlite",
                state / f"edge-{SITE}" / "edge.spool.deadletters.sqlite",
            ],
        )
        args = argparse.Namespace(hours=1.0, speed=speed, sample_s=5.0)
        soak = Soak(args, demo, influx, list(started))
        alive, lost, counted = asyncio.run(count_lost(soak, lambda: campaign.send_all(hostile)))
        if lost:
            campaign.problems.append(f"{lost} of {counted} samples not in InfluxDB")
        expected = [k for k in hostile if k.dead_letter]
        deadline = time.monotonic() + 30
        while True:
            letters = campaign.letters()
            kept = {(letter.topic, letter.payload) for letter in letters if letter.reason}
            missing = [k.name for k in expected if (k.topic, k.payload) not in kept]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        if not any(
            letter.topic == "influxdb" and "field type conflict" in letter.reason
            for letter in letters
        ):
            missing.append("the line only InfluxDB refuses")
        if missing:
            campaign.problems.append(f"not dead-lettered: {missing}")
        intact = campaign.verify("twin") and campaign.verify("controller")
        alive = campaign.alive("the campaign") and alive
        good_lost = (lost if lost >= 0 else counted) + campaign.good_unanswered
        for problem in campaign.problems:
            say(f"problem: {problem}")
        return {
            "kinds": len(hostile),
            "services_alive": alive,
            "good_lost": good_lost,
            "dead_lettered": len(letters),
            "audit_intact": intact,
            "samples_counted": counted,
            "good_commands": campaign.good_sent,
            "missing_letters": missing,
            "wall_s": round(time.monotonic() - started_wall, 1),
        }


def ok(result: dict[str, Any]) -> bool:
    return (
        result["services_alive"] is True
        and result["good_lost"] == 0
        and result["audit_intact"] is True
        and not result["missing_letters"]
        and result["samples_counted"] > 0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--speed", type=float, default=DEFAULT_SPEED, help="plant s per wall s")
    args = parser.parse_args()
    if not 1 <= args.speed <= 1000:
        parser.error("--speed must be within 1-1000")
    result = run(args.speed)
    print(json.dumps(result))
    sys.exit(0 if ok(result) else 1)


if __name__ == "__main__":
    main()
