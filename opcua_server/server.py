"""The OPC UA server of one pod: the twin, its clock, its address space, security and history.

    async with PlantServer(settings) as server:     # starts listening and ticking
        print(server.endpoint)
        await server.wait_closed()

Everything runs on one event loop. A tick task advances the twin to the plant time the clock
asks for (`speed` plant seconds per wall second), then publishes the changed tags, checks the
alarms and sleeps until the next plant instant a `publish_period_s` of wall time on. Writes and
method calls are served by `async def` handlers between ticks, so nothing ever races the twin.
Woken late, the clock first ticks the instants it passed over, up to MAX_CATCH_UP; a longer
stall is not made up: the twin simply advances further on the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from types import TracebackType

from asyncua import Server, ua

from core.alarms import build_alarms
from opcua_server import fast_values
from opcua_server.address_space import PlantNodes, build_address_space
from opcua_server.alarms import FAULTS_SINCE, Alarms
from opcua_server.audit_events import AuditEvents
from opcua_server.clock import PlantClock
from opcua_server.conditions import AlarmConditions
from opcua_server.history import TagHistory
from opcua_server.methods import CommandMethods, add_audit_since
from opcua_server.publisher import Publisher
from opcua_server.security import (
    PlantPermissions,
    PlantUserManager,
    TrustedClients,
    ensure_server_certificate,
    load_users,
)
from opcua_server.sessions import PlantInternalServer
from opcua_server.settings import OpcUaSettings
from opcua_server.synthetic import SyntheticSource, synthetic_tags
from opcua_server.writes import SetpointWriter
from twin import Plant

log = logging.getLogger(__name__)

# A tick wakes this long after its instant: asyncio may wake a sleeper up to its clock's
# resolution early, and a tick a hair before the instant would leave its samples to the next.
TICK_MARGIN_S = 0.001
# Instants a late clock ticks one by one before the current one: 2 s of wall time at the
# default period. A 20,000-tag tick costs about 0.3 CPU-s, so two seconds of them are made up
# within a few seconds, and a machine that cannot keep up at all is not dug deeper.
MAX_CATCH_UP = 20


class PlantServer:
    """One pod behind one OPC UA server.

    Args:
        settings: validated settings.
        plant: the twin to serve; None builds one from the settings.
    """

    def __init__(self, settings: OpcUaSettings, plant: Plant | None = None) -> None:
        self.settings = settings
        self.plant = (
            plant
            if plant is not None
            else Plant(
                settings.layout,
                seed=settings.seed,
                site_id=settings.site_id,
                variation=settings.variation,
                warm_start=settings.warm_start,
            )
        )
        self.server: Server | None = None
        self.clock = PlantClock(settings.speed, settings.start_utc, self.plant.now)
        self.ticks = 0
        self._nodes: PlantNodes | None = None
        self._publisher: Publisher | None = None
        self._alarms: Alarms | None = None
        self._conditions: AlarmConditions | None = None
        self._audit_events: AuditEvents | None = None
        self._history: TagHistory | None = None
        self._synthetic: SyntheticSource | None = None
        self._tick_lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None
        self._port = settings.port

    # Properties ------------------------------------------------------------------------------
    @property
    def application_uri(self) -> str:
        return f"urn:pcmm-twin:{self.settings.site_id}:opcua-server"

    @property
    def port(self) -> int:
        """The port the server listens on (the one the OS chose when the setting is 0)."""
        return self._port

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.settings.endpoint_host}:{self.port}/pcmm/{self.settings.site_id}"

    @property
    def nodes(self) -> PlantNodes:
        if self._nodes is None:
            raise RuntimeError("the server has not started")
        return self._nodes

    @property
    def history(self) -> TagHistory:
        """The tag history: every sample published, by node (ground truth for pipeline tests)."""
        if self._history is None:
            raise RuntimeError("the server has not started")
        return self._history

    @property
    def audit_log_id(self) -> str:
        """Names this server's audit log (as `AuditSince` answers it)."""
        if self._audit_events is None:
            raise RuntimeError("the server has not started")
        return self._audit_events.log_id

    @property
    def conditions(self) -> AlarmConditions:
        """The alarms as OPC UA conditions (their states and every transition)."""
        if self._conditions is None:
            raise RuntimeError("the server has not started")
        return self._conditions

    @property
    def published(self) -> int:
        """Tag samples published since start."""
        return self._publisher.published if self._publisher else 0

    # Life cycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Build the address space, start listening, and start the clock."""
        s, plant = self.settings, self.plant
        users = load_users(s.users_file)
        iserver = PlantInternalServer(user_manager=PlantUserManager(users, s.allow_anonymous))
        iserver.bind_condition_methods = True  # ConditionRefresh replays the active alarms
        fast_values.install()
        server = Server(iserver=iserver)
        await server.init()
        server.set_server_name(s.server_name)
        limit = server.get_node(
            ua.NodeId(
                ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall
            )
        )
        await limit.write_value(ua.Variant(s.max_monitored_items_per_call, ua.VariantType.UInt32))
        await server.set_application_uri(self.application_uri)
        server.set_endpoint(self.endpoint)
        server.socket_address = (s.host, s.port)
        pki = await ensure_server_certificate(s.cert_dir, self.application_uri, s.hostname)
        await server.load_certificate(str(pki.certificate))
        await server.load_private_key(str(pki.key))
        policies = [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
        if s.allow_insecure:
            policies.append(ua.SecurityPolicyType.NoSecurity)
        server.set_security_policy(policies, permission_ruleset=PlantPermissions())
        tokens: list[type] = [ua.UserNameIdentityToken]
        if s.allow_anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        server.set_certificate_validator(TrustedClients(pki.trusted))

        namespace = await server.register_namespace(s.namespace_uri)
        extra = synthetic_tags(s.extra_tags)
        self._nodes = await build_address_space(
            server, namespace, s.site_id, [*plant.registry.values(), *extra]
        )
        self._synthetic = SyntheticSource(extra, s.extra_tags_hz) if extra else None
        history = self._history = TagHistory(self.clock, s.history_window_s, s.history_max_samples)
        server.iserver.history_manager.set_storage(history)
        step = plant.layout.line.step_s
        periods = {m.id: float(getattr(m.params, "period_s", step)) for m in plant.layout.modules}
        synthetic_period = (
            1.0 / s.extra_tags_hz if s.extra_tags_hz else s.publish_period_s * s.speed
        )
        periods.update(dict.fromkeys({t.module for t in extra}, synthetic_period))
        self._publisher = Publisher(
            server, self._nodes, self.clock, history, periods, s.stale_periods
        )
        self._alarms = Alarms(server, self._nodes, self.clock)
        await self._alarms.init()
        conditions = AlarmConditions(
            server,
            self._nodes,
            self.clock,
            plant,
            build_alarms(plant.layout.modules, plant.registry),
        )
        await conditions.init()
        self._conditions = conditions
        audit = self._audit_events = AuditEvents(server, self._nodes, self.clock, plant)
        await audit.init()
        await add_audit_since(
            server,
            self._nodes,
            s.site_id,
            lambda after, most: (*audit.since(after, most), audit.log_id),
        )
        alarms = self._alarms
        await add_audit_since(
            server,
            self._nodes,
            s.site_id,
            lambda after, most: (*alarms.since(after, most), alarms.log_id),
            name=FAULTS_SINCE,
            records="One JSON object per fault event, in order, with the PlantFaultEventType "
            "field names (FaultSeq, FaultLog, FaultId, FaultKind, FaultTarget, Magnitude, "
            "FaultState, Severity, Message) and Time (ISO 8601 UTC)",
        )
        writer = SetpointWriter(plant, self._nodes, self._publisher.publish_one)
        methods = CommandMethods(plant, self.tick, writer.apply, self.clock)
        await methods.build(server, self._nodes, s.site_id)
        iserver.write_handler = writer

        self.clock.restart(plant.now)  # building took wall time the twin should not jump over
        await self.tick()
        await server.start()
        if server.bserver is not None and server.bserver.port:
            self._port = int(server.bserver.port)
        self.server = server
        self._ticker = asyncio.create_task(self._run_clock(), name="opcua-clock")
        log.info(
            "OPC UA server for %s at %s (speed %gx, %d tags)",
            s.site_id,
            self.endpoint,
            s.speed,
            len(self._nodes.tags),
        )

    async def stop(self) -> None:
        """Stop the clock and the server."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def wait_closed(self) -> None:
        """Serve until cancelled, or until the clock fails (its error is raised here)."""
        if self._ticker is not None:
            await self._ticker

    async def __aenter__(self) -> PlantServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # The clock -------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def between_ticks(self) -> AsyncIterator[None]:
        """Hold the clock between two ticks (a tick hands the event loop back while it
        publishes, so without this a reader may see half a tick's samples)."""
        async with self._tick_lock:
            yield

    async def tick(self, until: float | None = None) -> None:
        """Advance the twin to the clock's plant time (or to `until`) and publish what
        changed."""
        assert self._publisher is not None and self._alarms is not None
        async with self._tick_lock:
            plant = self.plant
            plant.advance(self.clock.target() if until is None else until)
            now = plant.now
            values = plant.snapshot()
            if self._synthetic is not None:
                values.update(self._synthetic.values(now))
            await self._publisher.publish(values, now)
            faults = plant.faults(include_ended=True)
            await self._alarms.check_faults(faults, now)
            if self._conditions is not None:
                await self._conditions.check(values, faults, now)
            if self._audit_events is not None:
                await self._audit_events.emit_new()
            self.ticks += 1

    async def _run_clock(self) -> None:
        # Ticks fall on the plant instants k * step (`publish_period_s` of wall time), just
        # after each, so a value sampled at an instant (a module's update, a synthetic tag's
        # sample) is published at once: ticking at an arbitrary phase made a sample wait up to
        # a period (0-100 ms, the server stage of bench.pipeline's latency, issue 17).
        # Woken late (a stall: the machine's other work, a long request), the instants passed
        # over are ticked one by one first, up to MAX_CATCH_UP of them, so a stall does
        # not drop a module's update or a sampled value; a longer one is not made up (the
        # twin jumps, rather than fall further behind doing the past).
        clock = self.clock
        step = self.settings.publish_period_s * clock.speed
        while True:
            delay = clock.wall_delay(clock.next_instant(self.plant.now, step)) + TICK_MARGIN_S
            await asyncio.sleep(max(0.0, delay))
            missed = clock.missed_instants(self.plant.now, clock.target(), step, MAX_CATCH_UP)
            for instant in missed:
                await self.tick(until=instant)
            await self.tick()
