"""What the demo's terminal shows, from MQTT only: what an operator sees, never the truth.

`Board` is the state (last value of every tag, active faults, recent events, services'
status, a few KPIs per site); it is fed decoded telemetry, events and status messages and
has no I/O, so it is unit-tested directly. `Watcher` is the MQTT client that feeds it, logged
in as the broker's `operator` user: it reads telemetry, events and status, and the ACL keeps
the twin's ground truth (pcmm/v1/+/simulation/#) from it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import paho.mqtt.client as mqtt

from bridge.mqtt_session import MqttConfig, MqttSession
from core import topics
from core.payload import Event, PayloadError, Scalar, decode_batch, decode_event
from core.tags import Tag, TagRegistry

RECENT_EVENTS = 12
RETRY_MAX_S = 5.0  # the view's reconnection backoff at most: a local broker, back soon


@dataclass
class SiteBoard:
    """One site as the operator sees it."""

    site: str
    registry: TagRegistry
    values: dict[str, Scalar] = field(default_factory=dict)
    faults: dict[str, str] = field(default_factory=dict)  # kind@target -> description
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=RECENT_EVENTS))
    samples: int = 0
    in_spec: dict[str, list[int]] = field(default_factory=dict)  # tag -> [in, out]
    controller_actions: int = 0
    alarms_active: set[str] = field(default_factory=set)
    #: Alarms by id from their transitions (the plant's conditions): (priority, state, level).
    alarm_states: dict[str, tuple[int, str, str]] = field(default_factory=dict)

    def unacknowledged(self) -> list[tuple[str, int, str, str]]:
        """Alarms waiting for an operator (active or returned, not acknowledged), most urgent
        first: (alarm, priority, state, level)."""
        waiting = [
            (alarm, priority, state, level)
            for alarm, (priority, state, level) in self.alarm_states.items()
            if state in ("active_unacked", "rtn_unacked")
        ]
        return sorted(waiting, key=lambda a: (-a[1], a[2] != "active_unacked", a[0]))

    def key_tags(self) -> list[Tag]:
        """Tags with quality limits (API, weight, hardness), the line state and the rate."""
        out = [t for t in self.registry.plant_tags() if t.limits is not None]
        for tag_id in ("line.state", "press.production_rate", "blender.residence_time"):
            if tag_id in self.registry:
                out.append(self.registry[tag_id])
        return out

    def text(self, tag_id: str) -> str:
        """A value as a person reads it: a state's name, a number with sense."""
        value = self.values.get(tag_id)
        if value is None:
            return "-"
        tag = self.registry.get(tag_id)
        if (
            tag is not None
            and tag.states
            and isinstance(value, int)
            and not isinstance(value, bool)
        ):
            return tag.states[value] if 0 <= value < len(tag.states) else str(value)
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    def in_spec_pct(self, tag_id: str) -> float | None:
        good, bad = self.in_spec.get(tag_id, [0, 0])
        return 100.0 * good / (good + bad) if good + bad else None


def is_controller(event: Event) -> bool:
    """An audit record of a controller's command (the edge names it `controller via edge`)."""
    return event.kind == "audit" and event.user.split(" ", 1)[0] == "controller"


def is_controller_action(event: Event) -> bool:
    """The controller's own record of a command it sent, with its outcome (one per command).

    Its notes about itself (mode switches, holds) have the target `controller`.
    """
    return event.kind == "audit" and event.source == "controller" and event.target != "controller"


def worth_showing(event: Event) -> bool:
    """One record per command: the plant's, or for the controller's commands the controller's.

    A command yields several audit events: the edge's `received` and result, and the twin's
    record (who, old, new, why, accepted); a controller's command also the controller's own
    record, which has the outcome as the controller saw it (accepted, refused, or no reply).
    The plant's record says it all for an operator's command, the controller's for its own
    (so a command the plant never saw shows too); an edge result matters only when an
    operator's command never reached the plant (refused at the edge).
    """
    if event.kind == "alarm" and event.priority:
        # A condition's transition: the controller's own report of its diagnosis is shown
        # already (its alarm event); the plant's raises and people's actions are news.
        return event.user.split(" ", 1)[0] != "controller"
    if event.kind != "audit":
        return True
    if is_controller(event):
        return event.source == "controller"
    return event.source != "edge" or not event.accepted


class Board:
    """Every site, and the services' status; fed from MQTT, read by the view."""

    def __init__(self, registries: dict[str, TagRegistry]) -> None:
        self.sites = {site: SiteBoard(site, registry) for site, registry in registries.items()}
        self.status: dict[str, str] = {}  # "<site>/<service>" -> online | offline
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.rejected = 0  # payloads that did not decode
        self.seen: set[tuple[str, str, str, int, int]] = set()

    def telemetry(self, payload: bytes) -> None:
        batch = decode_batch(payload)
        board = self.sites.get(batch.site)
        if board is None:
            return
        for sample in batch.samples:
            board.samples += 1
            board.values[sample.tag] = sample.value
            tag = board.registry.get(sample.tag)
            if tag is None or tag.limits is None or sample.quality != "good":
                continue
            if isinstance(sample.value, int | float) and not isinstance(sample.value, bool):
                low, high = tag.limits
                counts = board.in_spec.setdefault(sample.tag, [0, 0])
                counts[0 if low <= sample.value <= high else 1] += 1

    def event(self, payload: bytes) -> Event | None:
        event = decode_event(payload)
        board = self.sites.get(event.site)
        key = (event.site, event.kind, event.source, event.seq, event.time_ns)
        # The edge replays what the broker acknowledged lately after a reconnect (and at
        # start): the same event may come twice.
        if board is None or key in self.seen:
            return None
        if event.kind == "alarm" and event.priority:  # a transition of a plant condition
            board.alarm_states[event.target] = (event.priority, event.state, event.level)
        if not worth_showing(event):
            return None
        if len(self.seen) > 100_000:  # bounded: a replay comes seconds after the original
            self.seen.clear()
        self.seen.add(key)
        board.events.append(event)
        if event.kind == "fault":
            if event.action == "fault_raised":
                board.faults[event.target] = event.result or event.target
            else:
                board.faults.pop(event.target, None)
        elif event.kind == "alarm" and event.priority:
            if event.state.startswith("active"):
                board.alarms_active.add(event.target)
            else:
                board.alarms_active.discard(event.target)
        elif event.kind == "alarm":
            # The twin's limit alarms are active/normal, the controller's raise/clear.
            if event.action in ("active", "raise"):
                board.alarms_active.add(event.target)
            else:
                board.alarms_active.discard(event.target)
        elif is_controller_action(event):
            board.controller_actions += 1  # the controller's record: one per command sent
        return event

    def service_status(self, topic: str, payload: bytes) -> None:
        # pcmm/v1/<site>/status/<service>
        parts = topic.split("/")
        if len(parts) == 5:
            self.status[f"{parts[2]}/{parts[4]}"] = payload.decode(errors="replace")

    def feed(self, topic: str, payload: bytes) -> Event | None:
        """One MQTT message; returns the event it carried, if any."""
        with self.lock:
            try:
                if topic.endswith("/telemetry"):
                    self.telemetry(payload)
                elif "/events/" in topic:
                    return self.event(payload)
                elif "/status/" in topic:
                    self.service_status(topic, payload)
            except PayloadError:
                self.rejected += 1
        return None


def describe(event: Event) -> str:
    """One line for an event: who did what to what, and why."""
    if event.kind == "audit":
        change = f" {event.old} -> {event.new}" if event.new is not None else ""
        if event.accepted:
            verdict = " (accepted)" if is_controller_action(event) else ""
        elif event.result.startswith("no reply"):
            verdict = f" NO REPLY ({event.result})"
        else:
            verdict = f" REFUSED ({event.result})"
        why = f": {event.reason}" if event.reason else ""
        return f"{event.user or '?'} {event.action} {event.target}{change}{verdict}{why}"
    if event.kind == "fault":
        return f"fault {event.action.removeprefix('fault_')} {event.target}"
    if event.kind == "alarm" and event.priority:
        who = f" by {event.user}" if event.user and event.user != "system" else ""
        why = f": {event.reason}" if event.reason else ""
        return f"alarm {event.target} {event.action}{who}{why} ({event.result})"
    if event.kind == "alarm":
        return f"alarm {event.action} {event.target}: {event.result}"
    return f"{event.kind} {event.action} {event.target} {event.result}".strip()


class Watcher:
    """The MQTT client that feeds a `Board`, as the broker's `operator` user.

    A `bridge.mqtt_session.MqttSession` on a thread of its own: it reconnects with the
    services' backoff if the broker goes away, and `stop` disconnects cleanly.
    """

    def __init__(
        self,
        board: Board,
        port: int,
        password: str,
        on_event: Callable[[Event], None] | None = None,
        user: str = "operator",
        telemetry: bool = True,
    ) -> None:
        self.board = board
        self.on_event = on_event
        self.telemetry = telemetry  # False: events and status only (no view to fill)
        self.connected = threading.Event()
        self.port = port
        config = MqttConfig("127.0.0.1", port, user, password, f"demo-view-{id(self):x}")
        config = replace(config, keepalive_s=15, retry_max_s=RETRY_MAX_S)
        self.session = MqttSession(config, log=logging.getLogger("apps.demo.watch"))
        self.session.on_connect = self._on_connect
        self.client = self.session.client
        self.client.on_message = self._on_message
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _on_connect(self, client: mqtt.Client, flags: object, properties: object) -> None:
        wanted = [(topics.ALL_EVENTS, 1), (f"{topics.ROOT}/+/status/+", 1)]
        client.subscribe([(topics.ALL_TELEMETRY, 0), *wanted] if self.telemetry else wanted)
        self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        event = self.board.feed(msg.topic, bytes(msg.payload))
        if event is not None and self.on_event is not None:
            self.on_event(event)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.session.run, args=(self._stop,), name="demo-view-mqtt", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.session.close()
