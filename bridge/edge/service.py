"""The edge gateway: OPC UA subscription -> outbox -> MQTT, and MQTT commands -> OPC UA.

    OpcUaSource --samples--> Batcher --\\
    OPC UA events ----------------------+--> Outbox (SQLite, durable) --> MqttLink --> broker
    CommandExecutor (replies, audit) ---/                                   |
    self-metrics ----------------------/        commands <------------------/

The asyncio loop owns the OPC UA client, the batcher, the commands and the metrics; one thread
owns the paho client (blocking by design). They meet only at the outbox (a thread-safe spool)
and at the command queue. One flush commits what is waiting in one transaction as soon as a
burst of OPC UA notifications is taken in, or every `batch_interval_s` at the latest (events,
replies and metrics wait for it too); flushes never overlap, so the outbox order is the order
of the sequence numbers. Samples arriving during a flush go in the next one, so the batches grow
with the load.

No single message stops the edge: a command that fails inside the edge is logged and the next
one is taken; an outbox row the broker can never take is set aside as a dead letter
(`bridge.deadletter`, `<spool>.deadletters.sqlite`) by the MQTT thread. Should that thread
die anyway, `run` raises `EdgeFailedError` (or the `SpoolError` of a full disk) and the process
ends with a non-zero exit, so that its supervisor restarts it: an edge whose MQTT side is dead
must not look alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bridge.counters import Counters
from bridge.deadletter import DeadLetterStore
from bridge.edge.audit import AuditTrail, mark_path
from bridge.edge.commands import CommandExecutor, Incoming, audit_events, reply_payload
from bridge.edge.events import to_event
from bridge.edge.mqtt import SERVICE, MqttLink
from bridge.edge.opcua import OpcUaSource
from bridge.edge.outbox import Message, Outbox
from bridge.edge.sequence import Sequences
from bridge.edge.settings import EdgeSettings
from bridge.edge.telemetry import Batcher, Watermarks
from bridge.spool import Spool, SpoolError
from core.audit_chain import AuditChain
from core.layout import load_layout
from core.payload import encode_event
from core.tags import TagRegistry, build_registry
from core.text import clip, shown
from core.topics import SiteTopics

EVENT_COUNTER = "event"
ALARM_TRANSITIONS = "Alarms.TransitionsSince"
FAULTS_SINCE = "FaultsSince"
AUDIT_COUNTER = "audit"  # the edge's own audit records (not the twin's, numbered by the twin)
WATERMARK_PERIOD_S = 1.0
JOIN_TIMEOUT_S = 5.0
COMMAND_QUEUE = 1000  # commands waiting at most (each at most MAX_COMMAND_BYTES): 64 MB
_log = logging.getLogger("bridge.edge")

#: Counters reported even before they first move, so dashboards see zeros, not gaps.
REPORTED = (
    "samples_in",
    "samples_out",
    "published",
    "acked",
    "rejected",
    "backfilled",
    "events_in",
    "commands",
    "opcua_reconnects",
    "mqtt_reconnects",
    "lag_ms",
    "puback_ms",
    "deadlettered",
    "replies_redirected",
    "command_errors",
    "commands_dropped",
)


class EdgeFailedError(RuntimeError):
    """A part of the edge that must run for as long as the edge runs has died."""


def state_paths(spool_path: Path) -> tuple[Path, Path]:
    """Where the sequence counters and the watermarks live: beside the spool."""
    return (
        spool_path.with_name(spool_path.name + ".seq.json"),
        spool_path.with_name(spool_path.name + ".watermarks.json"),
    )


def registry_for(settings: EdgeSettings) -> TagRegistry:
    """The pod's tags (names, types, access) from its layout; ranges come from the server."""
    return build_registry(load_layout(settings.layout).modules)


def encode_metrics(settings: EdgeSettings, values: dict[str, float]) -> bytes:
    """A `pipeline` self-metrics report (the v1 shape of bridge.metrics, read by the historian)."""
    return json.dumps(
        {
            "v": 1,
            "service": SERVICE,
            "site": settings.site_id,
            "instance": settings.mqtt_client_id,
            "time_ns": time.time_ns(),
            "values": values,
        },
        separators=(",", ":"),
        allow_nan=False,
    ).encode()


class Edge:
    """The running edge; `run` until `stop` is set."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.topics = SiteTopics(settings.site_id)
        self.spool = Spool(
            settings.spool_path,
            max_items=settings.spool_max_items,
            max_bytes=settings.spool_max_bytes,
            synchronous=settings.spool_synchronous,
        )
        self.outbox = Outbox(self.spool)
        self.deadletters = DeadLetterStore(
            settings.deadletters,
            max_bytes=settings.deadletter_max_bytes,
            synchronous=settings.spool_synchronous,
        )
        seq_path, watermark_path = state_paths(settings.spool_path)
        self.sequences = Sequences(seq_path)
        self.watermarks = Watermarks(watermark_path)
        self.counters = Counters()
        self.batcher = Batcher(
            settings.site_id, self.outbox, self.sequences, self.watermarks, self.counters
        )
        self.audit = AuditTrail(mark_path(settings.spool_path), self._forward_audit)
        # The alarm transitions (conditions' events), each once by its AlarmSeq, backfilled
        # after a reconnect by Alarms.TransitionsSince, as the audit trail.
        self.alarm_trail = AuditTrail(
            mark_path(settings.spool_path, "alarms"),
            self._forward_alarms,
            method=ALARM_TRANSITIONS,
            seq_field="AlarmSeq",
            what="alarm transitions",
        )
        # The fault events (the simulation's truth, for scoring), each once by its FaultSeq,
        # backfilled by FaultsSince as the audit trail.
        self.fault_trail = AuditTrail(
            mark_path(settings.spool_path, "faults"),
            self._forward_faults,
            method=FAULTS_SINCE,
            seq_field="FaultSeq",
            what="fault events",
        )
        # The edge's own audit records (commands it carried out): one chained log per run,
        # numbered by their own persistent counter, so a gap in a log is a lost record.
        self.own_audit = AuditChain(uuid.uuid4().hex)
        self._trails = (self.audit, self.alarm_trail, self.fault_trail)
        self.source = OpcUaSource(
            settings,
            self.batcher,
            self.watermarks,
            self.counters,
            self._on_event,
            self.flush,
            trails=self._trails,
        )
        self.executor = CommandExecutor(settings.site_id, registry_for(settings), self.source)
        self._other: list[Message] = []  # events, replies, metrics waiting for the next flush
        self._flush_lock = asyncio.Lock()
        self._commands: asyncio.Queue[Incoming] = asyncio.Queue()
        self._dropping = False  # the command queue is full
        self._loop: asyncio.AbstractEventLoop | None = None

    # the outbox ------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Commit everything waiting, in one transaction (never two flushes at once)."""
        async with self._flush_lock:
            messages, samples = self.batcher.take()
            if self._other:
                messages.extend(self._other)
                self._other = []
            # The marks cover the records just taken: written once these are committed.
            marks = [(trail, trail.changes()) for trail in self._trails]
            if messages:
                await asyncio.to_thread(self.outbox.put, messages)
            self.batcher.committed(samples)
            for trail, mark in marks:
                if mark is not None:
                    await asyncio.to_thread(trail.write, mark)

    async def _flusher(self) -> None:
        interval = self.settings.batch_interval_s
        arrived = self.batcher.arrived
        next_save = time.monotonic() + WATERMARK_PERIOD_S
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):  # not wait_for: see opcua.py
                    await arrived.wait()
            arrived.clear()  # before the take: what comes after it asks for the next flush
            await self.flush()
            if time.monotonic() >= next_save:
                next_save = time.monotonic() + WATERMARK_PERIOD_S
                changes = self.watermarks.changes()
                if changes is not None:
                    await asyncio.to_thread(self.watermarks.write, changes)

    # events and commands ---------------------------------------------------------------------

    def _on_event(self, kind: str, fields: dict[str, object]) -> None:
        if kind == "audit":  # numbered by the twin; deduped and backfilled by AuditTrail
            self._queue_audit(self.audit.live(dict(fields)))
            return
        if kind == "alarm" and fields.get("AlarmSeq"):  # a transition, numbered by the server
            self._queue_events("alarm", self.alarm_trail.live(dict(fields)))
            return
        if kind == "fault" and fields.get("FaultSeq"):  # numbered by the server (older: not)
            self._queue_events("fault", self.fault_trail.live(dict(fields)))
            return
        seq = self.sequences.take(EVENT_COUNTER)
        event = to_event(self.settings.site_id, kind, dict(fields), seq)
        self._other.append(Message(self.topics.event(event.kind), encode_event(event)))

    def _queue_audit(self, records: list[dict[str, Any]]) -> None:
        for fields in records:
            event = to_event(self.settings.site_id, "audit", fields, 0)
            self._other.append(Message(self.topics.audit("twin"), encode_event(event)))

    def _queue_events(self, kind: str, records: list[dict[str, Any]]) -> None:
        """Alarm transitions or fault events, each numbered by the server."""
        for fields in records:
            event = to_event(self.settings.site_id, kind, fields, 0)
            self._other.append(Message(self.topics.event(kind), encode_event(event)))

    async def _forward_alarms(self, records: list[dict[str, Any]]) -> None:
        """Backfilled alarm transitions: queue them and commit them at once."""
        self._queue_events("alarm", records)
        await self.flush()

    async def _forward_faults(self, records: list[dict[str, Any]]) -> None:
        """Backfilled fault events: queue them and commit them at once."""
        self._queue_events("fault", records)
        await self.flush()

    async def _forward_audit(self, records: list[dict[str, Any]]) -> None:
        """Backfilled audit records: queue them and commit them at once."""
        self._queue_audit(records)
        await self.flush()

    def on_command(
        self, topic: str, payload: bytes, response: str | None, correlation: bytes | None
    ) -> None:
        """Called on the MQTT thread: hand the command to the event loop."""
        if self._loop is not None:
            incoming = Incoming.received(topic, payload, response, correlation)
            self._loop.call_soon_threadsafe(self._enqueue, incoming)

    def _enqueue(self, incoming: Incoming) -> None:
        """Queue a command, unless COMMAND_QUEUE are waiting already: then it is dropped (and
        counted), as a request to a busy plant; its requester times out and may ask again."""
        if self._commands.qsize() >= COMMAND_QUEUE:
            self.counters.add("commands_dropped")
            if not self._dropping:
                _log.warning(
                    "%d commands waiting: dropping new ones until some are done", COMMAND_QUEUE
                )
            self._dropping = True
            return
        if self._dropping:
            _log.info(
                "commands are taken again (%d dropped in all)",
                self.counters.get("commands_dropped"),
            )
        self._dropping = False
        self._commands.put_nowait(incoming)

    async def _command_loop(self) -> None:
        while True:
            incoming = await self._commands.get()
            try:
                answered = await self._command(incoming)
            except Exception:  # a bug of ours on one command must not stop the others
                self.counters.add("command_errors")
                _log.exception("command on %s failed inside the edge", shown(incoming.topic))
                continue
            if answered:
                await self.flush()  # a reply should not wait for the batch interval

    async def _command(self, incoming: Incoming) -> bool:
        """Carry out one command and queue its reply and audit events; False if ignored."""
        parsed = self.executor.parse_topic(incoming.topic)
        if parsed is None:
            return False  # another site's command, or not a command topic
        kind, user = parsed  # an unknown kind is refused by decode_command, and answered
        try:
            reply_topic = self.topics.reply(user)
        except ValueError:  # a user name that cannot be a topic level: nowhere to answer
            _log.warning("command from user %s ignored: no reply topic can name it", shown(user))
            return False
        self.counters.add("commands")
        outcome = await self.executor.execute(incoming, reply_topic, user, kind)
        if outcome.redirected:
            self.counters.add("replies_redirected")
        reply = outcome.reply
        _log.info(
            "command %s from %s: %s %s", clip(kind, 40), user, reply.code, clip(reply.reason, 200)
        )
        self._other.append(
            Message(outcome.response_topic, reply_payload(outcome), correlation=outcome.correlation)
        )
        seq = self.sequences.take(AUDIT_COUNTER, 2)
        for event in audit_events(self.settings.site_id, outcome, seq, time.time_ns()):
            sealed = self.own_audit.seal(event)
            self._other.append(Message(self.topics.audit("edge"), encode_event(sealed)))
        return True

    # self-metrics ----------------------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        values = dict.fromkeys(REPORTED, 0.0)
        values.update(self.counters.snapshot())
        values["spool_depth"] = float(self.spool.depth)
        values["spool_bytes"] = float(self.spool.size_bytes)
        values["dropped"] = float(self.spool.dropped)
        values["deadletters"] = float(self.deadletters.count)
        values["deadletters_dropped"] = float(self.deadletters.dropped)
        values["retries"] = values["opcua_reconnects"] + values["mqtt_reconnects"]
        values["opcua_connected"] = 1.0 if self.source.client is not None else 0.0
        return values

    async def _metrics_loop(self) -> None:
        period = self.settings.metrics_period_s
        last = self.metrics()
        while True:
            await asyncio.sleep(period)
            values = self.metrics()
            for name in ("samples_in", "samples_out", "acked"):
                values[f"{name}_per_s"] = (values[name] - last.get(name, 0.0)) / period
            last = values
            topic = self.topics.metrics(SERVICE)
            self._other.append(Message(topic, encode_metrics(self.settings, values)))

    # life cycle ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set (or a task fails); then stop within a few seconds.

        Raises:
            EdgeFailedError: the MQTT thread died (the process must end, non-zero).
        """
        loop = self._loop = asyncio.get_running_loop()
        s = self.settings
        link = MqttLink(s, self.outbox, self.counters, self.on_command, self.deadletters)
        mqtt_stop = threading.Event()
        died: asyncio.Future[BaseException] = loop.create_future()

        def settle(error: BaseException) -> None:
            if not died.done():
                died.set_result(error)

        def mqtt_main() -> None:
            try:
                link.run(mqtt_stop)
            except BaseException as error:
                _log.critical("the MQTT thread died", exc_info=True)
                loop.call_soon_threadsafe(settle, error)

        thread = threading.Thread(target=mqtt_main, name="mqtt")
        _log.info(
            "edge %s: %s -> %s:%d, outbox %s (%d waiting)",
            s.mqtt_client_id,
            s.opcua_url,
            s.mqtt_host,
            s.mqtt_port,
            s.spool_path,
            self.outbox.depth,
        )
        thread.start()
        tasks = [
            asyncio.create_task(self.source.run(), name="opcua"),
            asyncio.create_task(self._flusher(), name="flush"),
            asyncio.create_task(self._command_loop(), name="commands"),
            asyncio.create_task(self._metrics_loop(), name="metrics"),
        ]
        stopper = asyncio.create_task(stop.wait(), name="stop")
        try:
            waiting: list[asyncio.Future[Any]] = [*tasks, stopper, died]
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if died in done:
                error = died.result()
                if isinstance(error, SpoolError):  # a full disk: its own one-line message
                    raise error
                raise EdgeFailedError(f"the MQTT thread died: {error!r}") from error
            for task in done:
                if task is not stopper:
                    task.result()  # a task that ended on its own failed: raise its error
        finally:
            for task in [*tasks, stopper]:
                task.cancel()
            # Bounded: a task that does not end when cancelled must not keep the edge up.
            await asyncio.wait([*tasks, stopper], timeout=JOIN_TIMEOUT_S)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(JOIN_TIMEOUT_S):
                    await self.flush()
                changes = self.watermarks.changes()
                if changes is not None:
                    self.watermarks.write(changes)
            mqtt_stop.set()
            thread.join(JOIN_TIMEOUT_S)
            try:
                link.close()
            except Exception as error:  # after a failure the client may be in any state
                _log.warning("closing the MQTT connection failed: %r", error)
            self.spool.close()
            self.deadletters.close()
            _log.info("edge stopped")
