"""The supervisory controller on MQTT: telemetry in, setpoint commands, alarms and audit out.

    service = ControllerService(settings)
    await service.run()          # connects, and reconnects, until cancelled

It subscribes (MQTT 5, QoS 1, as its own user) to its site's telemetry, the replies to its
commands and its retained auto/manual switch; never to the simulation's ground truth. The
`TelemetryFeed` turns telemetry into decisions of the `Supervisor`; each command goes out as a
`CommandRequest` on `command/<kind>/<user>` with an MQTT 5 response topic and correlation
data, and its reply (or its absence) becomes an audit event. Every alarm is an alarm event.

The client is aiomqtt's (the controller may not import the bridge's session helper; its
settings use the same names): everything runs on the event loop, so the supervisor is only
ever touched from one task at a time. Each connection is a fresh client, `async with`-style:
losing the broker ends the session and `run`'s explicit loop connects again after the one
backoff (`core.backoff`). One reader task moves what arrives to the service's own queue, where
`_consume` takes it in bursts; messages go out without waiting for their PUBACK (a task each,
started in order), as paho's queue did.

Every message is handled on its own: one that cannot be read (any bytes at all: invalid UTF-8,
deeply nested or huge JSON, numbers too long to read, wrong types) is counted and ignored with
a log line, and the next one is taken; it never ends the session or the process. That matters
most for the retained mode switch, which the broker hands over again at every connection: a
bad one would otherwise crash the controller at every restart. A switch that cannot be
followed is also an audit record (`mode`, not accepted, why), once per distinct payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
from aiomqtt import MqttCodeError, MqttError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from controller.config import ControllerConfig
from controller.feed import Decision, TelemetryFeed, plant_seconds
from controller.messages import (
    SOURCE,
    EventSequence,
    ModeError,
    SentCommand,
    alarm_event,
    command_event,
    decode_mode,
    note_event,
    request_of,
)
from controller.settings import ControllerSettings
from controller.supervisor import Action, Alarm, Supervisor
from core.audit_chain import AuditChain
from core.backoff import Backoff
from core.payload import (
    CommandRequest,
    Event,
    PayloadError,
    TelemetryBatch,
    decode_batch,
    decode_reply,
    encode_command,
    encode_event,
)
from core.text import MAX_REASON_CHARS, clip, shown
from core.topics import SiteTopics

log = logging.getLogger("controller.service")

SERVICE = "controller"
QOS = 1
TIMER_S = 1.0  # wall seconds between checks for stale telemetry and unanswered commands
CLOSE_TIMEOUT_S = 2.0  # how long a clean stop waits for the broker to take `offline`
# Commands and events in flight (awaiting their PUBACK) before aiomqtt warns; a burst of audit
# records is normal and is not worth a log line.
PENDING_WARNING = 10_000


@dataclass(frozen=True, slots=True)
class _Disconnected:
    reason: str


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes
    correlation: bytes | None


_Item = _Disconnected | _Message


@dataclass(slots=True)
class Counters:
    """What the service did since it started (logged on state changes, read by tests)."""

    batches: int = 0
    bad_payloads: int = 0
    commands: int = 0
    accepted: int = 0
    refused: int = 0
    unanswered: int = 0
    alarms: int = 0
    alarm_reports: int = 0  # alarm commands sent (raise/clear of the controller's conditions)
    connections: int = 0
    errors: int = 0  # supervisor steps that raised (the controller held)
    ignored_modes: int = 0  # mode switches that could not be followed


@dataclass(slots=True)
class _Pending:
    sent: SentCommand
    since: float  # wall time it left (`_send`'s `leaving`; until then, of its decision)
    action: Action = field(repr=False)
    plant_at: float = -math.inf  # the plant's time then, by the telemetry's clock
    behind_s: float = 0.0  # how far behind the plant its decision was
    run: int = 0  # the plant's run it was sent to (`TelemetryFeed.restarts`)


class ControllerService:
    """The supervisor behind MQTT.

    Args:
        settings: validated settings.
        config: the controller's product and equipment configuration.
        monotonic: the wall clock, replaceable in tests.
    """

    def __init__(
        self,
        settings: ControllerSettings,
        config: ControllerConfig | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.topics = SiteTopics(settings.site_id)
        self.feed = TelemetryFeed(
            Supervisor(config, enabled=settings.enabled), settings.stale_after_s
        )
        self.counters = Counters()
        self.state = "idle"
        self.connected = asyncio.Event()  # set while a session is up (tests wait on it)
        self._monotonic = monotonic
        self._seq = EventSequence()
        self._audit_chain = AuditChain(uuid.uuid4().hex)  # one chained audit log per run
        self._pending: dict[bytes, _Pending] = {}
        # The newest source time of the telemetry taken off the connection so far, in the
        # order it came (a burst's batches included, before the feed has them): when a reply
        # comes, the plant's time as the connection has carried it (`_round_trip`).
        self._heard = -math.inf
        self._client: aiomqtt.Client | None = None
        self._tasks: asyncio.TaskGroup | None = None  # the session's, for publishing
        self._was_up = False  # the last session got as far as CONNACK
        self._failing = False  # the supervisor's last step raised
        self._errors_seen: set[str] = set()
        self._ignored_mode = b""  # digest of the last mode switch ignored (said once)

    @property
    def supervisor(self) -> Supervisor:
        """The feed's: a restarted plant is followed with a fresh one (`TelemetryFeed`)."""
        return self.feed.supervisor

    # The reconnection loop ----------------------------------------------------------------------
    async def run(self) -> None:
        """Serve until cancelled: connect, work, and after any loss connect again."""
        s = self.settings
        backoff = Backoff(s.retry_initial_s, s.retry_max_s)
        while True:
            self._set_state("connecting")
            try:
                await self._session()
            except MqttError as error:
                if self._was_up:  # it worked for a while: start the backoff afresh
                    backoff.reset()
                self._set_state("disconnected", f"{error}; retrying in {backoff.upcoming:g} s")
            await asyncio.sleep(backoff.next())

    async def _session(self) -> None:
        """One connection, from CONNECT to its loss (always ends by raising MqttError)."""
        s = self.settings
        self._was_up = False
        where = f"{s.mqtt_host}:{s.mqtt_port}"
        client = self._make_client()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that arrives as its awaitable completes, and the service would never stop.
        try:
            async with asyncio.timeout(s.mqtt_connect_timeout_s):
                await client.__aenter__()
        except MqttCodeError as error:  # a CONNACK that says no
            raise MqttError(f"broker refused the connection: {error.rc}") from None
        except (MqttError, TimeoutError) as error:
            raise MqttError(f"cannot reach {where}: {error or 'timeout'}") from None
        try:
            self._was_up = True
            self.counters.connections += 1
            await self._subscribe(client)
            await client.publish(self.topics.status(SERVICE), b"online", qos=QOS, retain=True)
            self._set_state("connected", f"{where} as {s.mqtt_username}")
            self.connected.set()
            inbox: asyncio.Queue[_Item] = asyncio.Queue()
            try:
                async with asyncio.TaskGroup() as tasks:
                    self._client, self._tasks = client, tasks
                    tasks.create_task(self._read(client, inbox), name="controller-read")
                    tasks.create_task(self._consume(inbox), name="controller-consume")
                    tasks.create_task(self._timer(), name="controller-timer")
            except* MqttError as group:
                raise group.exceptions[0] from None
        finally:
            self.connected.clear()
            self._client, self._tasks = None, None
            # A clean DISCONNECT (by __aexit__), so the broker does not publish the Last Will;
            # `offline` first. Refused at once when the connection is gone already.
            with contextlib.suppress(MqttError, TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    status = self.topics.status(SERVICE)
                    await client.publish(status, b"offline", qos=QOS, retain=True)
            with contextlib.suppress(MqttError, TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await client.__aexit__(None, None, None)

    def _make_client(self) -> aiomqtt.Client:
        s = self.settings
        tls = None
        if s.mqtt_tls or s.mqtt_tls_ca is not None:
            ca = str(s.mqtt_tls_ca) if s.mqtt_tls_ca is not None else None
            tls = aiomqtt.TLSParameters(ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED)
        client = aiomqtt.Client(
            s.mqtt_host,
            s.mqtt_port,
            username=s.mqtt_username,
            password=s.mqtt_password.get_secret_value() or None,
            identifier=s.mqtt_client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=aiomqtt.Will(self.topics.status(SERVICE), b"offline", qos=QOS, retain=True),
            clean_start=True,
            keepalive=s.mqtt_keepalive_s,
            timeout=s.mqtt_connect_timeout_s,  # CONNACK, SUBACK and the status messages' PUBACK
            tls_params=tls,
            logger=logging.getLogger("controller.mqtt"),
        )
        client.pending_calls_threshold = PENDING_WARNING
        return client

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        options = SubscribeOptions(qos=QOS)
        # Telemetry of every module of the site (line state included: it is the line module's
        # telemetry); the simulation's ground truth lives elsewhere and is never subscribed.
        filters = [(self.topics.all_telemetry, options), (self.topics.reply(self._user), options)]
        if self.settings.follow_mode_topic:
            filters.append((self.topics.mode(SERVICE), options))
        await client.subscribe(filters)

    # Receiving ----------------------------------------------------------------------------------
    async def _read(self, client: aiomqtt.Client, inbox: asyncio.Queue[_Item]) -> None:
        """Hand what arrives to `_consume`, in order, and then the loss of the connection.

        One reader that is never cancelled mid-read: `_consume` waits on its own queue, so a
        timeout there cannot drop a message aiomqtt had already taken off its queue.
        """
        try:
            async for message in client.messages:
                props = message.properties
                correlation = getattr(props, "CorrelationData", None) if props else None
                payload = message.payload
                data = payload if isinstance(payload, bytes) else str(payload or "").encode()
                inbox.put_nowait(_Message(message.topic.value, data, correlation))
        except MqttError as error:
            inbox.put_nowait(_Disconnected(str(error.__cause__ or error)))

    async def _consume(self, inbox: asyncio.Queue[_Item]) -> None:
        """Take what arrives in bursts; decide each second once its burst is over."""
        settle = self.settings.settle_s
        carry: _Item | None = None
        while True:
            items = [carry if carry is not None else await inbox.get()]
            carry = None
            while not inbox.empty():
                items.append(inbox.get_nowait())
            batches: list[TelemetryBatch] = []
            lost: _Disconnected | None = None
            for item in items:
                if isinstance(item, _Disconnected):
                    lost = item
                elif isinstance(item, _Message):
                    batch = self._receive(item)
                    if batch is not None:
                        batches.append(batch)
                        newest = max((s.source_ns for s in batch.samples), default=0)
                        self._heard = max(self._heard, plant_seconds(newest))
            if batches:
                rejected, restarts = self.feed.rejected, self.feed.restarts
                for decision in self.feed.take(batches, self._monotonic()):
                    self._act(decision)
                if self.feed.restarts > restarts:
                    self._heard = self.feed.newest  # the new run's clock, behind the old one's
                    log.warning(
                        "the plant restarted: its telemetry ran on for %g s behind what was "
                        "seen; following it afresh",
                        self.settings.stale_after_s,
                    )
                if self.feed.rejected > rejected:
                    self._bad_payload("telemetry", f"sample refused: {self.feed.last_rejection}")
            if lost is not None:
                raise MqttError(f"connection lost: {lost.reason}")
            # The rest of the burst (the other modules of this second) may be on its way.
            try:
                async with asyncio.timeout(settle):
                    carry = await inbox.get()
            except TimeoutError:
                flushed = self.feed.flush()
                if flushed is not None:
                    self._act(flushed)

    def _receive(self, message: _Message) -> TelemetryBatch | None:
        """Handle one message, whatever it holds; a telemetry batch is returned for the feed."""
        try:
            return self._receive_one(message)
        except Exception as error:  # bad input raises many kinds: never past one message
            self._bad_payload(message.topic, f"{type(error).__name__}: {error}")
            return None

    def _receive_one(self, message: _Message) -> TelemetryBatch | None:
        topic = message.topic
        if topic == self.topics.reply(self._user):
            self._on_reply(message)
            return None
        if topic == self.topics.mode(SERVICE):
            self._on_mode(message.payload)
            return None
        try:
            batch = decode_batch(message.payload)
        except PayloadError as error:
            self._bad_payload(topic, str(error))
            return None
        if batch.site != self.settings.site_id or topic != self.topics.telemetry(batch.module):
            self._bad_payload(topic, f"batch of {batch.site}/{batch.module} on the wrong topic")
            return None
        self.counters.batches += 1
        return batch

    def _bad_payload(self, topic: str, why: str) -> None:
        self.counters.bad_payloads += 1
        # Logged at warning once, then quietly: a broken publisher must not flood the log.
        level = logging.WARNING if self.counters.bad_payloads == 1 else logging.DEBUG
        log.log(level, "ignoring a payload on %s: %s", shown(topic), clip(why, 300))

    def _on_reply(self, message: _Message) -> None:
        pending = self._pending.pop(message.correlation or b"", None)
        if pending is None:
            log.debug("reply with unknown correlation data (an earlier session's?)")
            return
        round_trip = self._round_trip(pending)
        if round_trip is not None:
            self.supervisor.note_command_latency(round_trip)
        try:
            reply = decode_reply(message.payload)
        except Exception as error:  # PayloadError, or whatever else bad input raises
            self._bad_payload(message.topic, str(error) or type(error).__name__)
            reply = None
        if reply is not None and reply.accepted:
            self.counters.accepted += 1
        elif reply is not None:
            self.counters.refused += 1
            log.warning(
                "%s refused (%s): %s",
                _describe(pending.action),
                clip(reply.code, 40),
                clip(reply.reason, 300),
            )
        else:
            self.counters.unanswered += 1
        if reply is None or not reply.accepted:
            # The supervisor must know its command did not land: a gate command is sent
            # again, or the gate taken for stuck (`Gate.command_failed`).
            self.supervisor.command_failed(pending.action, reply.code if reply else None)
        self._audit(pending.sent, reply)

    def _round_trip(self, pending: _Pending) -> float | None:
        """How long a command took to act, in plant seconds: the gate must be asked that much
        earlier, and given that much longer to report, when the plant runs accelerated. None
        when the command measured this process rather than the link.

        Timed from when the command left (`_send`'s `leaving`), to the reply:
        - none when the command was sent, or its reply read, while the controller worked
          through a backlog (more than `behind_hold_s` behind the plant): its publication
          waited for the backlog, and its reply queued behind the telemetry that came
          meanwhile. That lateness is `behind_s`'s, which the gate holds for;
        - else the wall clock's, unless the telemetry read before the reply says the plant
          moved on less: then the reply waited for this process, not the link (the
          telemetry's clock comes in steps of its interval: one interval more is allowed).
        A controller stopped for 3 s at 50x (the acceptance test's stalls, a loaded machine's
        neighbours) read such replies as 150-plant-s round trips; kept as the link's latency
        (slowly forgotten), they stretched every diversion window's lead and every reaction
        time for the next half hour of plant time: a 325-s window opened for a weight trend,
        a lot density change left undiagnosed under it.
        """
        now, hold, feed = self._monotonic(), self.supervisor.cfg.behind_hold_s, self.feed
        if pending.run != feed.restarts:
            return None  # sent to a plant's earlier run, on its clock
        wall = (now - pending.since) * feed.speed
        if feed.stale:
            return wall  # no telemetry: the plant's clock is not known, the wall's is all
        if pending.behind_s > hold or feed.plant_now(now) - self._heard > hold:
            # (A gap upstream, the edge's or the broker's, reads as lateness here too and
            # hides that one reply's wait; a link that stays slow is measured by the replies
            # that follow, read while the telemetry keeps coming.)
            return None
        moved = self._heard - pending.plant_at
        if not math.isfinite(moved):
            return wall  # it left before the plant's clock was known
        plant = max(moved, 0.0) + self.supervisor.interval_s
        return min(wall, plant)

    def _on_mode(self, payload: bytes) -> None:
        if not payload.strip():
            return  # the retained switch was cleared: nothing to follow
        try:
            switch = decode_mode(payload)
        except ModeError as error:
            self._ignore_mode(payload, str(error))
            return
        self._ignored_mode = b""
        if switch.enabled == self.feed.enabled:
            return
        self.feed.enabled = switch.enabled
        who = switch.user or "unknown"
        log.info("mode %s by %s: %s", switch.mode, who, switch.reason or "no reason given")
        old, new = ("manual", "auto") if switch.enabled else ("auto", "manual")
        self._publish_event(
            note_event(
                self.settings.site_id,
                self._seq.next("audit"),
                self.feed.newest if self.feed.newest > 0 else time.time(),
                who,
                "mode",
                switch.reason,
                old=old,
                new=new,
                result="accepted",
            )
        )

    def _ignore_mode(self, payload: bytes, why: str) -> None:
        """Stay in the current mode; say so (log and audit) once per distinct payload, so the
        same retained switch handed over at every reconnection is not recorded again."""
        self.counters.ignored_modes += 1
        digest = hashlib.sha256(payload).digest()
        if digest == self._ignored_mode:
            return
        self._ignored_mode = digest
        mode = "auto" if self.feed.enabled else "manual"
        log.warning("ignoring a mode switch of %d bytes, staying %s: %s", len(payload), mode, why)
        self._publish_event(
            note_event(
                self.settings.site_id,
                self._seq.next("audit"),
                self.feed.newest if self.feed.newest > 0 else time.time(),
                "unknown",  # the payload's own claim is what could not be read
                "mode",
                "",
                old=mode,
                new=mode,
                accepted=False,
                result=clip(f"ignored: {why}"),
            )
        )

    # Timer ---------------------------------------------------------------------------------------
    async def _timer(self) -> None:
        """Wall-clock duties: stale telemetry (fault 14) and commands nobody answered."""
        while True:
            await asyncio.sleep(min(TIMER_S, self.settings.stale_after_s / 2))
            now = self._monotonic()
            was_stale = self.feed.stale
            decision = self.feed.check_stale(now)
            if decision is not None:
                if not was_stale:
                    self._set_state(
                        "holding", f"no telemetry for {self.settings.stale_after_s:g} s"
                    )
                self._act(decision)
            expired = [
                key
                for key, p in self._pending.items()
                if now - p.since > self.settings.reply_timeout_s
            ]
            for key in expired:
                pending = self._pending.pop(key)
                self.counters.unanswered += 1
                log.warning(
                    "%s: no reply within %g s",
                    _describe(pending.action),
                    self.settings.reply_timeout_s,
                )
                self.supervisor.command_failed(pending.action, None)
                self._audit(pending.sent, None)

    # Acting --------------------------------------------------------------------------------------
    def _act(self, decision: Decision) -> None:
        if self.state == "holding" and not decision.stale:
            self._set_state("connected", "telemetry is flowing again")
        site = self.settings.site_id
        self._supervisor_failed(decision)
        for alarm in decision.alarms:
            self.counters.alarms += 1
            log.info(
                "alarm %s %s: %s",
                alarm.name,
                "raised" if alarm.raised else "cleared",
                alarm.message,
            )
            self._publish_event(alarm_event(site, self._seq.next("alarm"), alarm))
            if alarm.name == "stale_telemetry":
                # Holding the setpoints is a decision about the plant: it goes on the record.
                self._publish_event(
                    note_event(
                        site,
                        self._seq.next("audit"),
                        alarm.time,
                        self._user,
                        "hold" if alarm.raised else "resume",
                        alarm.message,
                        result="accepted",
                    )
                )
            self._report_alarm(alarm)  # after the controller's own records of it
        for action in decision.actions:
            self._send(action, decision.time, decision.behind_s)

    def _supervisor_failed(self, decision: Decision) -> None:
        """Say (once per episode and kind of failure) that the supervisor failed and held;
        and say when it decides again."""
        failed = bool(decision.error)
        if failed:
            self.counters.errors += 1
        if failed == self._failing and decision.error in self._errors_seen | {""}:
            return
        self._failing = failed
        if failed:
            self._errors_seen.add(decision.error)
            log.error("supervisor failed at %.1f, holding: %s", decision.time, decision.error)
        alarm = Alarm(
            decision.time,
            "controller_error",
            failed,
            f"supervisor failed, holding the last setpoints: {decision.error}"
            if failed
            else "supervisor decides again",
        )
        self._publish_event(alarm_event(self.settings.site_id, self._seq.next("alarm"), alarm))

    def _report_alarm(self, alarm: Alarm) -> None:
        """Raise or clear the alarm's condition on the plant (`controller.<name>`) by an alarm
        command. It is not an action on the plant: sent while watching too, not counted as a
        command, and its reply (the edge audits it) is not waited for."""
        if self._client is None or not self.settings.report_alarms:
            return
        request = CommandRequest(
            "alarm",
            action="raise" if alarm.raised else "clear",
            alarm=alarm.name,
            reason=clip(alarm.message, MAX_REASON_CHARS),
        )
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = self.topics.reply(self._user)
        props.CorrelationData = uuid.uuid4().bytes
        topic = self.topics.command("alarm", self._user)
        if self._publish(topic, encode_command(request), props):
            self.counters.alarm_reports += 1

    def _send(self, action: Action, plant_time: float, behind_s: float) -> None:
        client = self._client
        request = request_of(action)
        reading = self.supervisor.tags.get(action.target) if action.kind == "setpoint" else None
        old = reading.value if reading is not None else None
        sent = SentCommand(request, plant_time, old, self._user)
        if client is None:
            self._audit_unsent(sent, "not connected")
            self.supervisor.command_failed(action, None)  # never left: lost
            return
        correlation = uuid.uuid4().bytes
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = self.topics.reply(self._user)
        props.CorrelationData = correlation
        self.counters.commands += 1
        wall = self._monotonic()
        # Its own decision's lateness, not the supervisor's `behind_s`: that is the last of
        # the burst's decisions', the least behind.
        self._pending[correlation] = _Pending(
            sent, wall, action, self.feed.plant_now(wall), behind_s, self.feed.restarts
        )

        def refused(why: str) -> None:
            self._pending.pop(correlation, None)
            self._audit_unsent(sent, why)
            self.supervisor.command_failed(action, None)  # never left: lost

        def leaving() -> None:
            # Timed from when it leaves, not from the decision: the publication waits for the
            # rest of the decisions' burst, and for this process should it be stopped between.
            pending = self._pending.get(correlation)
            if pending is not None:
                pending.since = self._monotonic()
                pending.plant_at = self.feed.plant_now(pending.since)

        topic = self.topics.command(request.kind, self._user)
        if not self._publish(topic, encode_command(request), props, refused, leaving):
            refused("not connected")
            return
        log.debug("sent %s", _describe(action))

    def _audit(self, sent: SentCommand, reply: Any) -> None:
        self._publish_event(
            command_event(
                self.settings.site_id,
                self._seq.next("audit"),
                sent,
                reply,
                self.settings.reply_timeout_s,
            )
        )

    def _audit_unsent(self, sent: SentCommand, why: str) -> None:
        log.warning("command not sent (%s): %s", why, sent.request)
        event = command_event(self.settings.site_id, self._seq.next("audit"), sent, None, 0)
        self._publish_event(replace(event, accepted=False, result=f"not sent: {why}"))

    def _publish_event(self, event: Event) -> None:
        if event.kind == "audit":
            # Chained before the connection is checked: a record lost here is a gap in the
            # chain that `plant audit verify` reports, not a silent hole.
            event = self._audit_chain.seal(event)
            topic = self.topics.audit(SOURCE)
        else:
            topic = self.topics.event(event.kind)
        if not self._publish(topic, encode_event(event)):
            log.info("not connected: event not published: %s", event)

    def _publish(
        self,
        topic: str,
        payload: bytes,
        properties: Properties | None = None,
        refused: Callable[[str], None] | None = None,
        leaving: Callable[[], None] | None = None,
    ) -> bool:
        """Hand a message (QoS 1) to the broker without waiting for its PUBACK; False when
        there is no session. `refused` hears why, should the client refuse it at once;
        `leaving` is called as it goes out."""
        client, tasks = self._client, self._tasks
        if client is None or tasks is None:
            return False
        try:
            # Tasks start in the order they are made: messages go out in the order sent.
            tasks.create_task(self._deliver(client, topic, payload, properties, refused, leaving))
        except RuntimeError:  # the session is ending
            return False
        return True

    async def _deliver(
        self,
        client: aiomqtt.Client,
        topic: str,
        payload: bytes,
        properties: Properties | None,
        refused: Callable[[str], None] | None,
        leaving: Callable[[], None] | None = None,
    ) -> None:
        if leaving is not None:
            leaving()
        try:
            await client.publish(topic, payload, qos=QOS, properties=properties, timeout=math.inf)
        except MqttCodeError as error:  # refused at once (no connection, queue full...)
            if refused is not None:
                rc = error.rc
                refused(mqtt.error_string(rc) if isinstance(rc, int) else str(rc))

    # Helpers -------------------------------------------------------------------------------------
    @property
    def _user(self) -> str:
        return self.settings.mqtt_username

    def _set_state(self, state: str, detail: str = "") -> None:
        """Log a change of the service's state (single messages are not logged)."""
        if state == self.state and state != "disconnected":
            return
        previous, self.state = self.state, state
        level = logging.WARNING if state in ("disconnected", "holding") else logging.INFO
        if state == "connecting" and previous != "idle":
            level = logging.DEBUG  # each retry; its failure is logged as it happens
        log.log(level, "%s%s", state, f": {detail}" if detail else "")


def _describe(action: Action) -> str:
    if action.kind == "line":
        return f"line {action.target}"
    if action.kind == "quarantine":
        start, end = action.value
        return f"quarantine of {start:.3f}..{end:.3f}"
    return f"{action.target} = {action.value}"


async def serve(settings: ControllerSettings, config: ControllerConfig | None = None) -> None:
    """Run the service until cancelled (the command line's entry point)."""
    service = ControllerService(settings, config)
    mode = "auto" if settings.enabled else "manual (watching only)"
    log.info("controller for %s, %s", settings.site_id, mode)
    with contextlib.suppress(asyncio.CancelledError):
        await service.run()
