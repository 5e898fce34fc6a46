"""The OPC UA side of the edge: subscribe to every tag, forward events, backfill gaps.

An explicit reconnection loop (as in aiomqtt's style): connect, browse `Objects/<site>` for
the tags, create one subscription with a monitored item per tag (and one for the Server
object's events), backfill, then consume notifications until the connection is lost; wait with
capped backoff and start again. Every (re)connection re-creates the subscription.

No notification is dropped silently: the subscription runs in asyncua's iterator mode with a
large queue whose overflow forces a reconnect (and so a backfill), monitored items have a queue
(`queue_size`) so a tag written twice between two publications keeps both samples, and the data
change trigger is StatusValueTimestamp, so a sample whose value did not change still counts.

Numbered records: after subscribing, before the telemetry backfill, `AuditTrail.backfill` reads
what was missed while not subscribed of the audit trail (`AuditSince`), the alarm transitions
(`Alarms.TransitionsSince`) and the fault events (`FaultsSince`); see `bridge.edge.audit`.

Backfill: for each tag, the watermark (source time up to which every sample is in the outbox,
persisted across restarts) is where the gap starts. After the subscription is live, the edge
reads each tag's history from its watermark (HistoryRead, raw) and adds the samples the live
subscription has not delivered. Until the backfilled samples are committed, the tag's watermark
stays put, so a failure during the backfill is backfilled again next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from asyncua import Client, Node, ua
from asyncua.common.subscription import DataChangeEvent, OpcEvent, OverflowPolicy

from bridge.counters import Counters
from bridge.edge.audit import AuditTrail
from bridge.edge.settings import EdgeSettings
from bridge.edge.telemetry import Batcher, RawSample, TagInfo, Watermarks
from bridge.operator import sign_and_encrypt
from core.backoff import Backoff
from core.payload import Scalar
from core.timebase import from_ns, to_ns

SIMULATION = "Simulation"
COMMANDS = "Commands"
AUDIT_EVENT_TYPE = "PlantAuditEventType"
#: The server's alarm conditions (opcua_server.conditions), under their standard supertypes.
CONDITION_TYPES = (
    (ua.ObjectIds.ExclusiveLevelAlarmType, "PlantLevelAlarmType"),
    (ua.ObjectIds.OffNormalAlarmType, "PlantDiscreteAlarmType"),
)
FAULT_EVENT_TYPE = "PlantFaultEventType"
ITEMS_PER_REQUEST = 1000  # monitored items per CreateMonitoredItems request, at most
HISTORY_NODES_PER_REQUEST = 100
EVENT_QUEUE = 200_000  # notifications the consumer may lag behind before a forced reconnect
YIELD_EVERY = 2000  # notifications taken in between two returns to the event loop, at most


def quality(status: ua.StatusCode | None) -> str:
    if status is None or status.is_good():
        return "good"
    if status.is_uncertain():
        return "uncertain"
    return "bad"


def _scalar(datavalue: ua.DataValue) -> Scalar:
    variant = datavalue.Value
    value = None if variant is None else variant.Value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


async def items_per_call(client: Client) -> int:
    """Monitored items to create per request: the server's MaxMonitoredItemsPerCall (its
    OperationLimits; 0 or unreadable: no limit stated), at most ITEMS_PER_REQUEST. A server
    creates a request's items without serving anything else meanwhile, so a large request
    stalls it, and a stall longer than the health probe's timeout looks like a dead link."""
    node = client.get_node(
        ua.NodeId(ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall)
    )
    try:
        stated = int(await node.read_value())
    except (ua.UaError, TypeError, ValueError):
        return ITEMS_PER_REQUEST
    return min(stated, ITEMS_PER_REQUEST) if stated > 0 else ITEMS_PER_REQUEST


#: Receives (kind, fields) for every OPC UA event: kind is audit, fault or alarm.
EventCallback = Callable[[str, dict[str, Any]], None]


class OpcUaSource:
    """Keeps one subscription to the twin's server alive and feeds the batcher."""

    def __init__(
        self,
        settings: EdgeSettings,
        batcher: Batcher,
        watermarks: Watermarks,
        counters: Counters,
        on_event: EventCallback,
        flush: Callable[[], Awaitable[None]],
        trails: Sequence[AuditTrail] = (),
    ) -> None:
        self._settings = settings
        self._batcher = batcher
        self._watermarks = watermarks
        self._counters = counters
        self._on_event = on_event
        self._flush = flush
        # The server's numbered records (audit trail, alarm transitions, fault events):
        # forwarded once each and backfilled after every (re)connection.
        self._trails = tuple(trails)
        self._log = logging.getLogger("bridge.edge.opcua")
        self.client: Client | None = None  # the connected client, for commands
        self.namespace = 0
        self._tags: dict[ua.NodeId, TagInfo] = {}
        self._ranges: dict[str, tuple[float, float] | None] = {}  # EURange by tag, this session
        self._event_types: dict[ua.NodeId, str] = {}
        self._seen: dict[str, set[int]] = {}  # live source times of held tags, during backfill
        #: The newest EventId of each alarm condition seen (alarm commands acknowledge it).
        self.latest_event_ids: dict[str, bytes] = {}
        self.connected = asyncio.Event()

    # the loop --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, subscribe, backfill and consume, forever; reconnect with capped backoff."""
        s = self._settings
        backoff = Backoff(s.retry_initial_s, s.retry_max_s)
        failing = False
        while True:
            client = await self._make_client()
            lost = asyncio.Event()

            async def on_lost(error: Exception, lost: asyncio.Event = lost) -> None:
                # asyncua's own log of it is silenced (cli.py): say why here. A TimeoutError
                # is the health probe: a read of ServerState unanswered for opcua_watchdog_s.
                self._log.warning("OPC UA connection lost: %r", error)
                lost.set()

            client.connection_lost_callback = on_lost
            try:
                await client.connect()
                if failing:
                    self._log.info("connected to %s again", s.opcua_url)
                else:
                    self._log.info("connected to %s", s.opcua_url)
                failing = False
                backoff.reset()
                await self._serve(client, lost)
            except (OSError, TimeoutError, ua.UaError, ConnectionError) as error:
                if not failing:
                    self._log.warning("OPC UA server %s: %r; reconnecting", s.opcua_url, error)
                failing = True
            finally:
                self.client = None
                self.connected.clear()
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the
                # cancellation that stops the edge, and this loop would never end.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        await client.disconnect()
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # Cancelled while asyncua was connecting or disconnecting, and asyncua
                # swallowed it: stop as asked instead of reconnecting forever.
                raise asyncio.CancelledError
            self._counters.add("opcua_reconnects")
            await asyncio.sleep(backoff.next())

    async def _make_client(self) -> Client:
        s = self._settings
        client = Client(
            s.opcua_url, timeout=s.opcua_timeout_s, watchdog_intervall=s.opcua_watchdog_s
        )
        client.set_user(s.opcua_user)
        password = s.opcua_password.get_secret_value()
        if password:
            client.set_password(password)
        if s.opcua_security != "None":
            assert s.opcua_cert is not None and s.opcua_key is not None  # the settings check it
            await sign_and_encrypt(client, s.opcua_cert, s.opcua_key, s.opcua_server_cert)
        return client

    async def _serve(self, client: Client, lost: asyncio.Event) -> None:
        s = self._settings
        self.namespace = await client.get_namespace_index(s.opcua_namespace_uri)
        self._tags = await self._browse(client)
        self._ranges = {}  # a restarted server may publish other ranges
        self._event_types = await self._find_event_types(client)
        cutoffs = self._cutoffs() if s.backfill else {}
        # Hold the watermarks of the tags with a gap before the first live sample arrives.
        self._batcher.holding |= set(cutoffs)
        self._seen = {tag: set() for tag in cutoffs}
        for trail in self._trails:
            trail.connecting()  # park live records until their backfill
        sub = await client.create_subscription(
            s.publishing_interval_ms,
            queue_maxsize=EVENT_QUEUE,
            overflow=OverflowPolicy.DISCONNECT,
        )
        consumer = asyncio.create_task(self._consume(sub), name="opcua-notifications")
        try:
            await self._subscribe(client, sub)
            self.client = client
            self.connected.set()
            # After `connected`: a command waiting for the link need not wait for this too.
            await self._refresh_conditions(client, sub)
            for trail in self._trails:
                await trail.backfill(client, self.namespace, s.site_id)
            if cutoffs:
                await self._backfill(client, cutoffs)
            lost_wait = asyncio.create_task(lost.wait(), name="opcua-lost")
            done, _ = await asyncio.wait({lost_wait, consumer}, return_when=asyncio.FIRST_COMPLETED)
            lost_wait.cancel()
            if consumer in done:
                consumer.result()  # re-raise what ended the consumer
            raise ConnectionError("connection lost")
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await consumer

    async def eu_range(self, client: Client, tag: str) -> tuple[float, float] | None:
        """The server's EURange of a tag (OPC 10000-8 AnalogItemType), None if it has none.

        The server's is the range that counts: it has the site's own equipment (its layout and
        variation), which the edge does not need to know. Read once per session and tag.
        """
        if tag in self._ranges:
            return self._ranges[tag]
        nodeid = next(
            (n for n, info in self._tags.items() if info.tag == tag and not info.truth), None
        )
        found: tuple[float, float] | None = None
        if nodeid is not None:
            try:
                prop = await client.get_node(nodeid).get_child("0:EURange")
                served = await prop.read_value()
                found = (float(served.Low), float(served.High))
            except ua.UaError:  # not an analog item: no range to hold it to
                found = None
        self._ranges[tag] = found
        return found

    async def _browse(self, client: Client) -> dict[ua.NodeId, TagInfo]:
        """Every tag variable under Objects/<site>: modules, and Simulation/<module>."""
        ns, site = self.namespace, self._settings.site_id
        root = client.get_node(ua.NodeId(site, ns))
        tags: dict[ua.NodeId, TagInfo] = {}
        for module_ref in await root.get_children_descriptions():
            name = module_ref.BrowseName.Name
            if module_ref.NodeClass != ua.NodeClass.Object or name == COMMANDS:
                continue
            module_node = client.get_node(module_ref.NodeId)
            if name == SIMULATION:
                for truth_ref in await module_node.get_children_descriptions():
                    if truth_ref.NodeClass == ua.NodeClass.Object:
                        truth_node = client.get_node(truth_ref.NodeId)
                        await self._add_variables(truth_node, truth_ref.BrowseName.Name, True, tags)
            else:
                await self._add_variables(module_node, name, False, tags)
        self._log.info("subscribing to %d tags", len(tags))
        return tags

    @staticmethod
    async def _add_variables(
        node: Node, module: str, truth: bool, tags: dict[ua.NodeId, TagInfo]
    ) -> None:
        for ref in await node.get_children_descriptions(refs=ua.ObjectIds.HasComponent):
            if ref.NodeClass == ua.NodeClass.Variable:
                tag = f"{module}.{ref.BrowseName.Name}"
                tags[ref.NodeId] = TagInfo(tag, module, truth)

    async def _find_event_types(self, client: Client) -> dict[ua.NodeId, str]:
        found: dict[ua.NodeId, str] = {}
        for name, kind in ((AUDIT_EVENT_TYPE, "audit"), (FAULT_EVENT_TYPE, "fault")):
            with contextlib.suppress(ua.UaError):
                node = await client.nodes.base_event_type.get_child(f"{self.namespace}:{name}")
                found[node.nodeid] = kind
        for base, name in CONDITION_TYPES:  # the server's alarm conditions
            with contextlib.suppress(ua.UaError):
                node = await client.get_node(ua.NodeId(base)).get_child(f"{self.namespace}:{name}")
                found[node.nodeid] = "alarm"
        if "alarm" not in found.values():  # an older server: limit alarms without a lifecycle
            found[ua.NodeId(ua.ObjectIds.ExclusiveLimitAlarmType)] = "alarm"
        return found

    async def _subscribe(self, client: Client, sub: Any) -> None:
        s = self._settings
        trigger = ua.DataChangeFilter()
        trigger.Trigger = ua.DataChangeTrigger.StatusValueTimestamp
        if s.deadband > 0:
            trigger.DeadbandType = ua.DeadbandType.Absolute
            trigger.DeadbandValue = s.deadband
        nodes = [client.get_node(nodeid) for nodeid in self._tags]
        per_call = await items_per_call(client)
        for start in range(0, len(nodes), per_call):
            chunk = nodes[start : start + per_call]
            await sub._subscribe(
                chunk,
                ua.AttributeIds.Value,
                trigger,
                queuesize=s.queue_size,
                sampling_interval=s.sampling_interval_ms,
            )
        types = [client.get_node(nodeid) for nodeid in self._event_types]
        await sub.subscribe_events(client.nodes.server, types, queuesize=10_000)

    # notifications ---------------------------------------------------------------------------

    async def _consume(self, sub: Any) -> None:
        tags, add, seen = self._tags, self._batcher.add, self._seen
        counters = self._counters
        taken = 0
        async for event in sub:
            taken += 1
            if taken % YIELD_EVERY == 0:
                # A queue that is never empty never suspends the loop: hand it back now and
                # then, so the health probe's answer is read (issue 17).
                await asyncio.sleep(0)
            if isinstance(event, DataChangeEvent):
                info = tags.get(event.node.nodeid)
                if info is None:
                    continue
                dv = event.data.monitored_item.Value
                source_ns = to_ns(dv.SourceTimestamp)
                held = seen.get(info.tag)
                if held is not None:
                    held.add(source_ns)
                add(
                    RawSample(
                        info=info,
                        value=_scalar(dv),
                        quality=quality(dv.StatusCode),
                        source_ns=source_ns,
                        server_ns=to_ns(dv.ServerTimestamp),
                    )
                )
                counters.add("samples_in")
            elif isinstance(event, OpcEvent):
                self._event(event.event)

    async def _refresh_conditions(self, client: Client, sub: Any) -> None:
        """ConditionRefresh: the current event of every alarm of interest (their EventIds, for
        alarm commands; transitions already forwarded are not forwarded again)."""
        request = ua.CallMethodRequest()
        request.ObjectId = ua.NodeId(ua.ObjectIds.ConditionType)
        request.MethodId = ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh)
        request.InputArguments = [ua.Variant(sub.subscription_id, ua.VariantType.UInt32)]
        result = (await client.uaclient.call([request]))[0]
        if not result.StatusCode.is_good():
            self._log.warning("ConditionRefresh: %s", result.StatusCode.name)

    def _event(self, event: Any) -> None:
        fields = {k: v.Value for k, v in event.get_event_props_as_fields_dict().items()}
        name, event_id = fields.get("ConditionName"), fields.get("EventId")
        if isinstance(name, str) and isinstance(event_id, bytes):
            self.latest_event_ids[name] = event_id
        kind = self._event_types.get(fields.get("EventType"))
        if kind is None:
            return
        self._counters.add("events_in")
        self._on_event(kind, fields)

    # backfill --------------------------------------------------------------------------------

    def _cutoffs(self) -> dict[str, int]:
        """The watermark of every subscribed tag that has one: where its gap starts."""
        values = self._watermarks.values
        return {info.tag: values[info.tag] for info in self._tags.values() if info.tag in values}

    async def _backfill(self, client: Client, cutoffs: dict[str, int]) -> None:
        """Read each held tag's history after its watermark; add what the live feed lacks."""
        by_tag = {info.tag: (nodeid, info) for nodeid, info in self._tags.items()}
        tags = sorted(cutoffs, key=cutoffs.__getitem__)
        oldest = to_ns(datetime.now(UTC)) - int(self._settings.backfill_max_s * 1e9)
        added = 0
        for start in range(0, len(tags), HISTORY_NODES_PER_REQUEST):
            chunk = tags[start : start + HISTORY_NODES_PER_REQUEST]
            low = max(min(cutoffs[t] for t in chunk), oldest)
            history = await self._read_history(client, [by_tag[t][0] for t in chunk], low)
            for tag, values in zip(chunk, history, strict=True):
                info, cutoff, live = by_tag[tag][1], cutoffs[tag], self._seen.get(tag, set())
                for dv in values:
                    source_ns = to_ns(dv.SourceTimestamp)
                    if source_ns <= cutoff or source_ns in live:
                        continue
                    self._batcher.add(
                        RawSample(
                            info=info,
                            value=_scalar(dv),
                            quality=quality(dv.StatusCode),
                            source_ns=source_ns,
                            server_ns=to_ns(dv.ServerTimestamp),
                        )
                    )
                    added += 1
        # Commit them, then let the watermarks move on past the gap.
        await self._flush()
        self._batcher.release(set(cutoffs))
        self._seen = {}
        self._counters.add("backfilled", added)
        self._log.info("backfilled %d samples of %d tags", added, len(cutoffs))

    async def _read_history(
        self, client: Client, nodeids: list[ua.NodeId], low_ns: int
    ) -> list[list[ua.DataValue]]:
        """Raw history after `low_ns` of several nodes, following continuation points."""
        details = ua.ReadRawModifiedDetails()
        details.IsReadModified = False
        details.StartTime = from_ns(low_ns + 1000)  # after the watermark (µs resolution)
        details.EndTime = ua.get_win_epoch()  # open end: the plant clock may run ahead of ours
        details.NumValuesPerNode = 0
        details.ReturnBounds = False
        results: list[list[ua.DataValue]] = [[] for _ in nodeids]
        pending = {i: None for i in range(len(nodeids))}  # index -> continuation point
        while pending:
            params = ua.HistoryReadParameters()
            params.HistoryReadDetails = details
            params.TimestampsToReturn = ua.TimestampsToReturn.Both
            params.ReleaseContinuationPoints = False
            order = list(pending)
            for i in order:
                item = ua.HistoryReadValueId()
                item.NodeId = nodeids[i]
                item.ContinuationPoint = pending[i]
                params.NodesToRead.append(item)
            answers = await client.uaclient.history_read(params)
            pending = {}
            for i, answer in zip(order, answers, strict=True):
                if not answer.StatusCode.is_good():
                    self._log.warning("history of %s: %s", nodeids[i], answer.StatusCode)
                    continue
                data = answer.HistoryData
                results[i].extend(data.DataValues if data is not None else [])
                if answer.ContinuationPoint:
                    pending[i] = answer.ContinuationPoint
        return results
