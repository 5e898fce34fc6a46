"""The controller service against a real Mosquitto: telemetry in, commands, alarms, audit out.

An edge stand-in publishes the twin's telemetry as the edge gateway does (one TelemetryBatch
per module and second, from `plant.snapshot()` without ground truth, as user `edge`) and
answers commands on their MQTT 5 response topic. In the closed-loop test it also carries the
commands out on the twin, in lock step, so the ground truth can score the controller.

The broker runs deploy/mosquitto's configuration and ACL, as deployed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import queue
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from asyncua import Client, ua
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import SecretStr

from apps.closed_loop import carry_out
from bridge.edge.service import Edge as EdgeService
from bridge.edge.settings import EdgeSettings
from controller.messages import ModeSwitch, encode_mode
from controller.service import ControllerService
from controller.settings import ControllerSettings
from controller.supervisor import Action
from core.audit_chain import StoredRecord, as_text, verify_chain
from core.faults import FaultSpec
from core.payload import (
    CommandReply,
    CommandRequest,
    Event,
    decode_command,
    decode_event,
    encode_batch,
    encode_event,
    encode_reply,
)
from core.topics import SiteTopics
from opcua_server.security import hash_password
from testkit.servers import Mosquitto, make_mosquitto, running_mosquitto
from tests.twin_telemetry import EdgeLike
from twin import Plant

from .conftest import RunningServer, serve

pytestmark = pytest.mark.integration

SITE = "site1"
TOPICS = SiteTopics(SITE)
SPEED = 8.0  # plant seconds per wall second in the whole-loop test


# The broker ----------------------------------------------------------------------------------
#: Lines to add to a test's copy of the ACL (none: the deployed ACL is what is tested).
ACL_ADDITIONS: dict[str, tuple[str, ...]] = {}


def add_acl_lines(broker: Mosquitto, additions: dict[str, tuple[str, ...]]) -> None:
    """Add lines to users' sections of the broker's copy of the ACL (before it starts)."""
    acl = broker.folder / "acl"
    out: list[str] = []
    for line in acl.read_text().splitlines():
        out.append(line)
        if line.startswith("user "):
            out.extend(additions.get(line.split()[1], ()))
    acl.write_text("\n".join(out) + "\n")
    if os.geteuid() == 0:  # started as root, mosquitto reads it as user mosquitto
        entry = pwd.getpwnam("mosquitto")
        os.chown(acl, entry.pw_uid, entry.pw_gid)
        acl.chmod(0o640)


@contextmanager
def started_broker(additions: dict[str, tuple[str, ...]]) -> Iterator[Mosquitto]:
    broker = make_mosquitto()
    add_acl_lines(broker, additions)
    with running_mosquitto(broker) as running:
        yield running


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    """The deployed broker configuration."""
    with started_broker(ACL_ADDITIONS) as running_broker:
        yield running_broker


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def mqtt_client(broker: Mosquitto, user: str) -> mqtt.Client:  # a fresh client id each time
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"test-{user}-{secrets.token_hex(3)}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    c.username_pw_set(user, broker.passwords[user])
    c.connect("127.0.0.1", broker.port, keepalive=10)
    c.loop_start()
    wait_until(c.is_connected, 10, f"{user} to connect")
    return c


def subscribe(c: mqtt.Client, topic_filter: str) -> None:
    done = threading.Event()
    c.on_subscribe = lambda *args: done.set()
    c.subscribe(topic_filter, qos=1)
    assert done.wait(10), "no SUBACK"


# The controller service, on its own event loop ------------------------------------------------
@contextmanager
def running(
    settings: ControllerSettings, monotonic: Callable[[], float] = time.monotonic
) -> Iterator[ControllerService]:
    service = ControllerService(settings, monotonic=monotonic)
    loop = asyncio.new_event_loop()
    task: list[asyncio.Task[None]] = []

    async def main() -> None:
        task.append(asyncio.current_task())  # type: ignore[arg-type]
        with contextlib.suppress(asyncio.CancelledError):
            await service.run()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        yield service
    finally:
        wait_until(lambda: bool(task), 5, "the service task")
        loop.call_soon_threadsafe(task[0].cancel)
        thread.join(15)
        loop.close()


def settings(broker: Mosquitto, **overrides: Any) -> ControllerSettings:
    values: dict[str, Any] = {
        "site_id": SITE,
        "mqtt_host": "127.0.0.1",
        "mqtt_port": broker.port,
        "mqtt_username": "controller",
        "mqtt_password": broker.passwords["controller"],
        "mqtt_client_id": f"controller-{secrets.token_hex(3)}",
        "settle_s": 0.01,
        "retry_initial_s": 0.2,
        "retry_max_s": 1.0,
    }
    values.update(overrides)
    return ControllerSettings(**values)


# The edge stand-in ---------------------------------------------------------------------------
@dataclass
class Edge:
    """Publishes telemetry as user edge; answers (and queues) the commands it receives."""

    broker: Mosquitto
    plant: Plant
    accept: bool = True
    # How the gate's rejects are answered, one entry per reject from the first: a refusal
    # code (the plant's no: not carried out) or "drop" (no answer at all: lost on the way).
    # Rejects beyond the list are accepted.
    gate_rejects: list[str] = field(default_factory=list)
    rejects_seen: int = 0
    quarantines: list[str] = field(default_factory=list)  # the same, for quarantines
    quarantines_seen: int = 0
    commands: queue.Queue[tuple[str, CommandRequest, Any]] = field(default_factory=queue.Queue)
    received: list[tuple[str, CommandRequest, Any]] = field(default_factory=list)
    # While set, replies to commands (not to alarm reports) are kept, the commands still
    # carried out, until `release`.
    hold_replies: bool = False
    held: list[tuple[str, bytes, Properties]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.feed = EdgeLike(self.plant, SITE)
        self.client = mqtt_client(self.broker, "edge")
        self.client.on_message = self._on_command
        subscribe(self.client, TOPICS.all_commands)

    def _on_command(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        kind = msg.topic.split("/")[-2]
        request = decode_command(bytes(msg.payload), kind)
        props = msg.properties
        # The controller's reply route. paho sets MQTT 5 properties as attributes it does not
        # declare, so they are read by name.
        correlation = getattr(props, "CorrelationData", None)
        response_topic = getattr(props, "ResponseTopic", None)
        assert correlation is not None and response_topic is not None
        entry = (msg.topic, request, props)
        self.received.append(entry)
        code = "accepted" if self.accept else "state"
        if request.tag == "diverter.position_sp" and request.value == "reject":
            self.rejects_seen += 1
            if self.rejects_seen <= len(self.gate_rejects):
                code = self.gate_rejects[self.rejects_seen - 1]
        if request.kind == "quarantine":
            self.quarantines_seen += 1
            if self.quarantines_seen <= len(self.quarantines):
                code = self.quarantines[self.quarantines_seen - 1]
        if code == "drop":
            return
        if code == "accepted":
            self.commands.put(entry)  # carried out on the twin by the test, in lock step
        reply = CommandReply(code == "accepted", code, "test", 0)
        out = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        out.CorrelationData = correlation
        if self.hold_replies and request.kind != "alarm":  # (alarm reports are not timed)
            self.held.append((response_topic, encode_reply(reply), out))
            return
        client.publish(response_topic, encode_reply(reply), qos=1, properties=out)

    def release(self) -> int:
        """Send the replies kept while `hold_replies` was set; returns how many."""
        held, self.held = self.held, []
        for topic, payload, props in held:
            self.client.publish(topic, payload, qos=1, properties=props)
        return len(held)

    def publish_second(self, until: float) -> int:
        """Advance the twin to `until` and publish what changed; returns how many batches."""
        self.plant.advance(until)
        batches = self.feed.batches()
        for batch in batches:
            self.client.publish(TOPICS.telemetry(batch.module), encode_batch(batch), qos=1)
        return len(batches)

    def publish_run(self, seconds: float) -> None:
        """Publish `seconds` of plant time as fast as the broker takes it (open loop)."""
        end = self.plant.now + seconds
        while self.plant.now < end:
            self.publish_second(self.plant.now + 1.0)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def events(broker: Mosquitto) -> tuple[mqtt.Client, list[Event]]:
    seen: list[Event] = []
    c = mqtt_client(broker, "operator")
    c.on_message = lambda cl, ud, msg: seen.append(decode_event(bytes(msg.payload)))
    subscribe(c, TOPICS.base + "/events/#")  # audit records are one level deeper
    return c, seen


def lock_step(
    edge: Edge,
    service: ControllerService,
    seconds: float,
    *,
    wait_for_timeouts: bool = False,
    clock: Clock | None = None,
) -> None:
    """Publish `seconds` of plant time one second at a time, each decided and its commands
    carried out on the twin before the next (with `wait_for_timeouts`, a command left
    unanswered is first given up on by the service: its reply timeout is wall time; with
    `clock`, the service's wall clock, moved on by a plant second at its speed first)."""
    plant = edge.plant
    end = plant.now + seconds
    earlier = service.counters.commands - len(edge.received)  # sent to another edge
    while plant.now < end:
        if clock is not None:
            clock.now += 1.0 / clock.speed
        edge.publish_second(plant.now + 1.0)
        second = edge.feed.plant_ns(plant.now) / 1e9

        # Lock step: the controller has decided this second, and its commands are here.
        def decided(t: float = second) -> bool:
            return service.feed._decided >= t

        wait_until(decided, 5, f"a decision on {second}")
        wait_until(
            lambda: earlier + len(edge.received) >= service.counters.commands, 5, "the commands"
        )
        if wait_for_timeouts:
            wait_until(lambda: not service._pending, 15, "every reply, or its timeout")
        while not edge.commands.empty():
            _, request, _ = edge.commands.get()
            if request.kind == "alarm":  # the controller's own alarm conditions
                continue
            if request.kind == "line":
                action = Action("line", request.action, None, request.reason)
            elif request.kind == "quarantine":
                window = (
                    (request.start_ns - edge.feed.start_ns) / 1e9,
                    (request.end_ns - edge.feed.start_ns) / 1e9,
                )
                action = Action("quarantine", "genealogy", window, request.reason)
            else:
                action = Action("setpoint", request.tag, request.value, request.reason)
            carry_out(plant, action)


@dataclass
class Clock:
    """A wall clock for the service that the test moves: a plant running at `speed` in lock
    step, and stalls of the controller's process of a chosen length."""

    speed: float
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def bridging_plant(onset_s: float = 60.0) -> Plant:
    plant = Plant(seed=1, warm_start=True)
    plant.inject(FaultSpec("bridging", magnitude=0.8, duration_s=300, onset_s=plant.now + onset_s))
    return plant


# Tests ---------------------------------------------------------------------------------------
def test_closed_loop_over_mqtt_diverts_a_bridging_fault(broker: Mosquitto) -> None:
    plant = bridging_plant()
    edge = Edge(broker, plant)
    watcher, seen = events(broker)
    with running(settings(broker)) as service:
        wait_until(service.connected.is_set, 10, "the controller to connect")
        lock_step(edge, service, 480)
        wait_until(lambda: not service._pending, 5, "every reply")
    # The watcher's events are messages of their own: waited for before it stops listening.
    wait_until(lambda: any(e.target == "bridging" for e in seen), 5, "the bridging alarm")
    wait_until(
        lambda: any(e.kind == "audit" and e.target == "diverter.position_sp" for e in seen),
        5,
        "the gate's audit records",
    )
    edge.close()
    watcher.loop_stop()

    # Ground truth: no out-of-spec tablet reached accept, and only about the OOS mass diverted.
    assert plant.ledger.oos_accepted_tablets == 0
    assert plant.ledger.mass_diverted_on_command <= 1.5 * plant.ledger.oos_mass
    rejects = [(t, r, p) for t, r, p in edge.received if r.tag == "diverter.position_sp"]
    assert rejects and rejects[0][1].value == "reject"
    topic, request, props = rejects[0]
    assert topic == TOPICS.command("setpoint", "controller")
    assert request.reason.startswith("predicted content")
    assert props.ResponseTopic == TOPICS.reply("controller") and props.CorrelationData
    alarm = next(e for e in seen if e.kind == "alarm" and e.target == "bridging")
    assert alarm.source == "controller" and alarm.action == "raise" and "bridging" in alarm.reason
    audits = [e for e in seen if e.kind == "audit" and e.target == "diverter.position_sp"]
    assert audits and all(e.accepted and e.user == "controller" for e in audits)
    assert audits[0].new == "reject" and audits[0].result == "accepted"
    own = [e for e in seen if e.kind == "audit"]  # the controller's chain, unbroken
    records = [StoredRecord(log=e.log, seq=e.seq, time_ns=e.time_ns, prev_hash=e.prev_hash,
                            hash=e.hash, user=e.user, action=e.action, target=e.target,
                            old=as_text(e.old), new=as_text(e.new), reason=e.reason,
                            accepted=e.accepted, result=e.result) for e in own]  # fmt: skip
    assert verify_chain(records) == (len(own), 1)


def test_a_gate_that_refuses_its_reject_aborts_the_line(broker: Mosquitto) -> None:
    """The plant refuses the gate's reject (denied: the controller's account may not move it):
    a gate that does not follow its commands, whatever it reports. The line is aborted at the
    next decision and what reached accept is quarantined: nothing out of spec released, and the
    operator told why. (Before, a reject that never showed in the gate's setpoint was never
    judged: the tablets it was for were released, with no alarm.)"""
    plant = bridging_plant()
    edge = Edge(broker, plant, gate_rejects=["denied"])
    with running(settings(broker)) as service:
        wait_until(service.connected.is_set, 10, "the controller to connect")
        lock_step(edge, service, 480)
        wait_until(lambda: not service._pending, 5, "every reply")
    edge.close()
    sent = [r for _, r, _ in edge.received if r.kind != "alarm"]
    first_reject = next(
        i for i, r in enumerate(sent) if r.tag == "diverter.position_sp" and r.value == "reject"
    )
    after = sent[first_reject + 1 :]
    assert any(r.kind == "line" and r.action == "abort" for r in after), after[:10]
    assert any(r.kind == "quarantine" for r in after), after[:10]
    raised = [r for _, r, _ in edge.received if r.kind == "alarm" and r.alarm == "diverter_stuck"]
    assert raised and "refused" in raised[0].reason, raised
    assert plant.state == "faulted"
    # (Sent ahead of the lean blend's arrival, the reject's refusal stops the line before it
    # reaches the press.)
    assert plant.ledger.oos_accepted_tablets == 0


def test_a_lost_gate_reject_is_sent_again(broker: Mosquitto) -> None:
    """The gate's first reject gets no answer (lost on the way, never carried out): once the
    service gives up on it (its reply timeout) the reject is sent again, and the tablets that
    reached accept until it landed are quarantined. The line goes on."""
    plant = bridging_plant()
    edge = Edge(broker, plant, gate_rejects=["drop"])
    with running(settings(broker, reply_timeout_s=0.5)) as service:
        wait_until(service.connected.is_set, 10, "the controller to connect")
        lock_step(edge, service, 480, wait_for_timeouts=True)
        assert service.counters.unanswered >= 1
    edge.close()
    sent = [r for _, r, _ in edge.received if r.kind != "alarm"]
    rejects = [i for i, r in enumerate(sent) if r.tag == "diverter.position_sp"]
    assert len(rejects) >= 2 and sent[rejects[1]].value == "reject", [sent[i] for i in rejects]
    assert any(r.kind == "quarantine" for r in sent[rejects[1] :])
    assert not any(r.kind == "line" and r.action == "abort" for r in sent)
    assert plant.ledger.oos_tablets > 0
    assert plant.ledger.oos_accepted_tablets == 0


def test_a_lost_quarantine_is_sent_again(broker: Mosquitto) -> None:
    """The reject is lost, and so is the quarantine of what reached accept until its resend
    landed: the quarantine is sent again once the service gives up on it (flagging a window
    twice holds nothing twice), and carried out. (Before, the tablets it was for were released,
    their only trace an unanswered audit record.)"""
    plant = bridging_plant()
    edge = Edge(broker, plant, gate_rejects=["drop"], quarantines=["drop"])
    with running(settings(broker, reply_timeout_s=0.5)) as service:
        wait_until(service.connected.is_set, 10, "the controller to connect")
        lock_step(edge, service, 480, wait_for_timeouts=True)
    edge.close()
    holds = [(r.start_ns, r.end_ns) for _, r, _ in edge.received if r.kind == "quarantine"]
    assert len(holds) >= 2 and holds[1] == holds[0], holds
    assert plant.ledger.tablets_quarantined > 0  # the one sent again was carried out
    assert plant.ledger.oos_accepted_tablets == 0


def test_a_restarted_plant_is_followed_afresh(broker: Mosquitto) -> None:
    """The twin restarted: its source times begin again from its new start, far behind what the
    old run reached ahead of the wall clock. The controller follows it afresh once its telemetry
    has run on for `stale_after_s` behind what was seen (before, it dropped all of it as late:
    deaf, and not even stale, for as long as the old run had lasted)."""
    old = Edge(broker, Plant(seed=3, warm_start=True))
    with running(settings(broker, stale_after_s=1.0)) as service:
        wait_until(service.connected.is_set, 10, "the controller to connect")
        lock_step(old, service, 600)
        first = service.supervisor
        old.close()
        plant = bridging_plant()
        edge = Edge(broker, plant)
        edge.feed.start_ns = old.feed.start_ns + round(60e9)  # 540 plant s behind
        deadline = time.monotonic() + 30
        while service.feed.restarts == 0:  # a wall-clock rule: published until it holds
            assert time.monotonic() < deadline, "the restarted plant was never followed"
            edge.publish_second(plant.now + 1.0)
            time.sleep(0.05)
        assert service.supervisor is not first
        lock_step(edge, service, 480)
        wait_until(lambda: not service._pending, 5, "every reply")
    edge.close()
    rejects = [r for _, r, _ in edge.received if r.tag == "diverter.position_sp"]
    assert rejects and rejects[0].value == "reject"
    assert plant.ledger.oos_accepted_tablets == 0


def test_a_reply_read_late_is_no_slow_link_but_one_the_plant_waited_for_is(
    broker: Mosquitto,
) -> None:
    """A command's round trip is the plant's time it took, not the wall time until the
    controller read the reply: stopped for 3 s at 50x right after a command (the acceptance
    run's stalls; a loaded machine's neighbours), the controller read its reply after 150 plant
    s of wall clock, though no telemetry had come before it. Taken for the link's latency, that
    stretched every diversion window's lead and reaction time for half an hour of plant time
    (a 325-s window). A short stop is measured on the plant's clock; nor does a command sent
    while the controller works through a backlog measure the link. A reply that comes after
    20 plant seconds of telemetry did take that long, and is measured so. (A stop between a
    decision and its publication, which `leaving` times from, is not made here: the test has
    no hold on the service's event loop.)"""
    clock = Clock(speed=50.0)
    edge = Edge(broker, Plant(seed=1, warm_start=True))
    # (Stops of up to 8 s of the test's wall clock are neither stale telemetry nor lost replies.)
    with running(settings(broker, stale_after_s=60.0, reply_timeout_s=60.0), clock) as service:
        wait_until(service.connected.is_set, 10, "the controller to connect")
        lock_step(edge, service, 150, clock=clock)  # the feed measures the speed over 2 s
        assert 45.0 < service.feed.speed < 55.0
        sv = service.supervisor

        def a_command_held(plant_seconds: float) -> None:
            edge.hold_replies = True
            for _ in range(int(plant_seconds)):
                if edge.held:
                    return
                lock_step(edge, service, 1, clock=clock)
            raise AssertionError(f"no command in {plant_seconds:g} plant s")

        def release_all() -> None:
            assert service._pending, "no command waits for its reply"
            edge.hold_replies = False
            edge.release()
            wait_until(lambda: not service._pending, 5, "every reply")

        # Stopped for 0.1 s right after a command (5 plant s, short of `behind_hold_s`): the
        # reply came back at once, and nothing was read meanwhile. The plant's clock says so:
        # within its telemetry interval's steps, not 5 s.
        a_command_held(300)
        clock.now += 0.1
        release_all()
        assert sv.command_latency_s <= 2 * sv.interval_s + 1.0, sv.command_latency_s
        lock_step(edge, service, 5)  # the 5 s of telemetry, read at once
        lock_step(edge, service, 30, clock=clock)

        # Stopped for 3 s: the reply came back at once, then 150 plant s of telemetry; all
        # of it is read when the process runs again, the reply first: read 150 s behind the
        # plant, it measures this process, not the link.
        a_command_held(300)
        clock.now += 3.0
        release_all()
        assert sv.command_latency_s <= 2 * sv.interval_s + 1.0, sv.command_latency_s
        lock_step(edge, service, 150)  # the backlog, read at once
        lock_step(edge, service, 60, clock=clock)

        # Stopped again, then working through the backlog: the commands sent meanwhile wait
        # for it, and their replies for the telemetry that comes meanwhile. What they measure
        # is the controller's lateness (`behind_s`), not the link's.
        clock.now += 8.0  # 400 plant s
        edge.hold_replies = True
        backlog = 400
        while not edge.held:  # the first command decided in the backlog
            assert backlog > 100, "no command in 300 s of backlog"
            lock_step(edge, service, 1)
            backlog -= 1
        edge.hold_replies = False
        lock_step(edge, service, backlog)
        lock_step(edge, service, 60, clock=clock)  # new commands answered at once
        release_all()  # what was held in the backlog
        assert sv.command_latency_s <= 2 * sv.interval_s + 1.0, sv.command_latency_s

        # A link that is slow: the reply is out while the plant runs 20 s on.
        a_command_held(300)
        lock_step(edge, service, 20, clock=clock)
        release_all()
        # 20 plant s, by the wall clock at the feed's speed (its average since the flow began)
        assert 16.0 <= sv.command_latency_s <= 23.0, sv.command_latency_s
    edge.close()


def test_refused_commands_are_audited_as_refused(broker: Mosquitto) -> None:
    edge = Edge(broker, bridging_plant(), accept=False)
    watcher, seen = events(broker)
    with running(settings(broker)) as service:
        wait_until(service.connected.is_set, 10, "the controller to connect")
        edge.publish_run(300)
        wait_until(lambda: service.counters.refused > 0, 10, "a refused command")
        wait_until(lambda: any(e.kind == "audit" for e in seen), 5, "an audit event")
    refused = [e for e in seen if e.kind == "audit" and e.action == "write"]
    assert refused and not refused[0].accepted and refused[0].result == "state: test"
    edge.close()
    watcher.loop_stop()


def test_watching_only_sends_no_command_but_alarms(broker: Mosquitto) -> None:
    edge = Edge(broker, bridging_plant())
    watcher, seen = events(broker)
    with running(settings(broker, enabled=False)) as service:
        wait_until(service.connected.is_set, 10, "the controller to connect")
        edge.publish_run(400)
        wait_until(lambda: any(e.target == "bridging" for e in seen), 15, "the bridging alarm")
        # Watching only, it acts on nothing; it reports its alarms to the plant's conditions.
        wait_until(
            lambda: any(r.action == "raise" and r.alarm == "bridging" for _, r, _ in edge.received),
            10,
            "the bridging alarm's report",
        )
        time.sleep(0.5)
        assert service.counters.commands == 0
    assert [r for _, r, _ in edge.received if r.kind != "alarm"] == []
    edge.close()
    watcher.loop_stop()


def test_manual_mode_switch_at_run_time(broker: Mosquitto) -> None:
    operator = mqtt_client(broker, "operator")
    switch = encode_mode(ModeSwitch("manual", "alice", "commissioning"))
    operator.publish(TOPICS.mode("controller"), switch, qos=1, retain=True).wait_for_publish(5)
    edge = Edge(broker, bridging_plant())
    watcher, seen = events(broker)
    with running(settings(broker)) as service:
        wait_until(lambda: not service.feed.enabled, 10, "the retained switch")
        edge.publish_run(400)
        wait_until(lambda: any(e.target == "bridging" for e in seen), 15, "the bridging alarm")
        assert [r for _, r, _ in edge.received if r.kind != "alarm"] == []
        mode = next(e for e in seen if e.action == "mode")
        assert (mode.user, mode.old, mode.new, mode.reason) == (
            "alice",
            "auto",
            "manual",
            "commissioning",
        )
        # Back to auto while the fault is still on: commands flow.
        auto = encode_mode(ModeSwitch("auto", "alice", "done"))
        operator.publish(TOPICS.mode("controller"), auto, qos=1, retain=True)
        wait_until(lambda: service.feed.enabled, 5, "auto")
    operator.publish(TOPICS.mode("controller"), b"", qos=1, retain=True).wait_for_publish(5)
    operator.loop_stop()
    edge.close()
    watcher.loop_stop()


def test_stale_telemetry_holds_and_is_audited(broker: Mosquitto) -> None:
    edge = Edge(broker, Plant(seed=2, warm_start=True))
    watcher, seen = events(broker)
    with running(settings(broker, stale_after_s=1.0)) as service:
        wait_until(service.connected.is_set, 10, "the controller to connect")
        edge.publish_run(30)
        wait_until(
            lambda: any(e.target == "stale_telemetry" and e.action == "raise" for e in seen),
            10,
            "the stale alarm",
        )
        assert service.state == "holding" and service.feed.stale
        # The audit record is a message of its own, on another topic: it may come after the
        # alarm (CI: it had not yet, the moment the alarm was seen).
        wait_until(
            lambda: any(e.kind == "audit" and e.action == "hold" for e in seen),
            10,
            "the hold's audit record",
        )
        hold = next(e for e in seen if e.kind == "audit" and e.action == "hold")
        assert "holding the last good setpoints" in hold.reason
        commands = service.counters.commands
        time.sleep(2.0)
        assert service.counters.commands == commands  # nothing sent while holding
        edge.publish_run(5)  # telemetry is back
        wait_until(
            lambda: any(e.target == "stale_telemetry" and e.action == "clear" for e in seen),
            10,
            "the stale alarm to clear",
        )
        assert service.state == "connected"
    edge.close()
    watcher.loop_stop()


def test_reconnects_after_a_broker_restart(broker: Mosquitto) -> None:
    with running(settings(broker)) as service:
        wait_until(service.connected.is_set, 10, "the controller to connect")
        broker.stop()
        wait_until(lambda: service.state == "disconnected", 10, "the loss to be noticed")
        broker.start()
        wait_until(lambda: service.counters.connections == 2, 15, "a second connection")
        edge = Edge(broker, Plant(seed=2, warm_start=True))
        edge.publish_run(5)
        wait_until(lambda: service.counters.batches > 0, 10, "telemetry after the restart")
        edge.close()


def test_wrong_password_keeps_retrying(broker: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="controller.service")
    with running(settings(broker, mqtt_password="wrong")) as service:
        wait_until(lambda: "refused the connection" in caplog.text, 10, "the refusal to be logged")
        time.sleep(0.5)
        assert service.counters.connections == 0 and not service.connected.is_set()


# The whole loop ------------------------------------------------------------------------------
@contextmanager
def edge_gateway(settings: EdgeSettings) -> Iterator[EdgeService]:
    """The edge gateway (bridge.edge) on its own event loop, as in its own process."""
    edge = EdgeService(settings)
    loop = asyncio.new_event_loop()
    stop: list[asyncio.Event] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        await edge.run(stop[0])

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        yield edge
    finally:
        wait_until(lambda: bool(stop), 5, "the edge to start")
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(20)
        loop.close()


async def read_truth(url: str, namespace_uri: str, tag: str) -> Any:
    """A ground-truth tag from the OPC UA Simulation folder (simulation only, for scoring)."""
    async with Client(url, timeout=10) as c:
        ns = await c.get_namespace_index(namespace_uri)
        node = c.get_node(ua.NodeId(f"{SITE}.Simulation.{tag}", ns))
        # A counter that has not moved for a while is published UncertainLastUsableValue.
        return (await node.read_data_value(raise_on_bad_status=False)).Value.Value


def test_whole_loop_twin_opcua_edge_mqtt_controller(broker: Mosquitto, tmp_path: Path) -> None:
    """twin + OPC UA server, edge, Mosquitto, controller; a fault injected by `plant fault`:
    no out-of-spec tablet is accepted (ground truth from the OPC UA Simulation folder)."""
    users = tmp_path / "whole-loop-users.toml"  # serve() writes its own users.toml
    users.write_text(
        "".join(
            f'[users.{name}]\nrole = "{role}"\npassword_hash = "{hash_password(pw)}"\n'
            for name, role, pw in (
                ("alice", "operator", "alice-secret"),
                ("edge", "gateway", "edge-secret"),
            )
        )
    )
    with serve(tmp_path, users_file=users, speed=SPEED, history_window_s=600.0) as server:
        opcua = server.server.settings
        edge_settings = EdgeSettings(
            site_id=SITE,
            opcua_url=server.url,
            opcua_password=SecretStr("edge-secret"),
            mqtt_host="127.0.0.1",
            mqtt_port=broker.port,
            mqtt_password=SecretStr(broker.passwords["edge"]),
            mqtt_client_id=f"edge-{secrets.token_hex(3)}",
            spool_path=tmp_path / "edge.spool.sqlite",
            spool_synchronous="NORMAL",
            replay_window_s=0.0,
        )
        truth = "diverter.true_oos_accepted"
        inject = [
            shutil.which("plant", path=str(Path(sys.executable).parent)) or "plant",
            "fault", "inject", "bridging", "--magnitude", "0.8", "--duration", "2m",
            "--url", server.url, "--user", "alice", "--password", "alice-secret",
            "--reason", "whole-loop test",
        ]  # fmt: skip
        with edge_gateway(edge_settings), running(settings(broker)) as controller:
            wait_until(lambda: controller.counters.batches > 50, 30, "telemetry via the edge")
            before = asyncio.run(read_truth(server.url, opcua.namespace_uri, truth))
            done = subprocess.run(inject, capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == 0, done.stderr
            start = server.run(lambda: _now(server))
            # The lean blend reaches the press one residence time and the feed frame's
            # delay after the onset; let the whole window pass, and the line recover.
            wait_until(lambda: server.run(lambda: _now(server)) > start + 360, 120, "the fault")
            after = asyncio.run(read_truth(server.url, opcua.namespace_uri, truth))
            assert controller.counters.errors == 0
        audit = server.audit()
    rejects = [r for r in audit if r.target == "diverter.position_sp" and r.new == "reject"]
    assert rejects and all(r.accepted and r.user.startswith("controller") for r in rejects)
    assert server.plant.ledger.oos_mass > 0  # the fault did make out-of-spec material
    assert after == before  # and none of it was accepted


async def _now(server: RunningServer) -> float:
    return server.plant.now


def test_the_deployed_acl_lets_the_controller_publish_events() -> None:
    with started_broker({}) as deployed:
        watcher, seen = events(deployed)
        controller = mqtt_client(deployed, "controller")
        probe = Event(SITE, "alarm", 1, 0, "controller", target="acl probe")
        controller.publish(TOPICS.event("alarm"), encode_event(probe), qos=1).wait_for_publish(5)
        # A denied publish is acknowledged too, then dropped: wait for the event to arrive.
        try:
            wait_until(lambda: any(e.target == "acl probe" for e in seen), 10, "the probe event")
        finally:
            controller.loop_stop()
            watcher.loop_stop()


def test_a_refused_quarantine_raises_a_critical_alarm(broker: Mosquitto) -> None:
    """The reject is lost, and the plant refuses the quarantine of what reached accept until
    its resend landed (e.g. a genealogy that cannot flag the window): it is not sent again,
    and the controller raises `quarantine_refused` with the window, so the tablets are held by
    hand. (Before, its only trace was an audit record the operator never sees.)"""
    plant = bridging_plant()
    edge = Edge(broker, plant, gate_rejects=["drop"], quarantines=["denied"])
    watcher, seen = events(broker)
    with running(settings(broker, reply_timeout_s=0.5)) as service:
        wait_until(service.connected.is_set, 10, "the controller to connect")
        lock_step(edge, service, 480, wait_for_timeouts=True)
        wait_until(
            lambda: any(e.kind == "alarm" and e.target == "quarantine_refused" for e in seen),
            5,
            "the alarm event",
        )
    edge.close()
    watcher.loop_stop()
    holds = [r for _, r, _ in edge.received if r.kind == "quarantine"]
    assert len(holds) == 1  # refused for good: not sent again
    alarm = next(e for e in seen if e.kind == "alarm" and e.target == "quarantine_refused")
    assert alarm.action == "raise" and "(denied)" in alarm.reason
    assert plant.ledger.tablets_quarantined == 0
