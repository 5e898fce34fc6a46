"""An operator's OPC UA client to one pod: line commands, faults, setpoints and the plant clock.

    async with OperatorClient(target) as plant:
        fault_id = await plant.inject("bridging", "", 0.8, 300.0, "test")
        print(await plant.status())

Everything goes through the methods of `Objects/<site>/Commands` and the tag nodes, as any
OPC UA client would, so the server checks the user's role and audits every call. Whatever can
go wrong is raised as one of three errors with a one-line message: `UnreachableError`,
`NotAuthorisedError` (user, password, certificate or role) and `RefusedError` (the plant said no).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from asyncua import Client, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua import status_codes
from cryptography import x509

from core.alarms import Priority
from core.tags import LINE_STATES

COMMANDS = "Commands"
ALARMS = "Alarms"
#: The server's condition types (opcua_server.conditions), under their standard supertypes.
CONDITION_TYPES = (
    (ua.ObjectIds.ExclusiveLevelAlarmType, "PlantLevelAlarmType"),
    (ua.ObjectIds.OffNormalAlarmType, "PlantDiscreteAlarmType"),
)
REFRESH_WAIT_S = 10.0
#: Alarm actions -> (the standard method called, on the ShelvingState object or not).
ALARM_METHODS: dict[str, tuple[int, bool]] = {
    "acknowledge": (ua.ObjectIds.AcknowledgeableConditionType_Acknowledge, False),
    "confirm": (ua.ObjectIds.AcknowledgeableConditionType_Confirm, False),
    "comment": (ua.ObjectIds.ConditionType_AddComment, False),
    "shelve": (ua.ObjectIds.ShelvedStateMachineType_OneShotShelve2, True),
    "timed_shelve": (ua.ObjectIds.ShelvedStateMachineType_TimedShelve2, True),
    "unshelve": (ua.ObjectIds.ShelvedStateMachineType_Unshelve2, True),
    "remove_from_service": (ua.ObjectIds.AlarmConditionType_RemoveFromService2, False),
    "place_in_service": (ua.ObjectIds.AlarmConditionType_PlaceInService2, False),
}
CLOCK_TAG = "line.state"  # stamped every plant second whatever the line does

#: Status codes that mean "not you": wrong user or password, untrusted certificate, wrong role.
DENIED = frozenset(
    {
        ua.StatusCodes.BadUserAccessDenied,
        ua.StatusCodes.BadIdentityTokenInvalid,
        ua.StatusCodes.BadIdentityTokenRejected,
        ua.StatusCodes.BadCertificateUntrusted,
        ua.StatusCodes.BadSecurityChecksFailed,
        ua.StatusCodes.BadNotWritable,
    }
)


class PlantError(Exception):
    """Something the operator should read: a one-line message and the exit code it means."""

    exit_code = 1


class RefusedError(PlantError):
    """The plant refused the command (bad argument, wrong state, ...)."""

    exit_code = 1


class NoSuchMethodError(RefusedError):
    """The server does not have this method (an older server)."""


class UnreachableError(PlantError):
    """No OPC UA server answered at the endpoint."""

    exit_code = 3


class NotAuthorisedError(PlantError):
    """The server does not accept this user, password, certificate or role for the call."""

    exit_code = 4


@dataclass(frozen=True, slots=True)
class Target:
    """Where the plant is and who is asking."""

    url: str
    site: str = "site1"
    namespace_uri: str = "urn:pcmm-twin:opcua"
    user: str = ""
    password: str = ""
    cert: Path | None = None  # client certificate (DER or PEM): Basic256Sha256 SignAndEncrypt
    key: Path | None = None
    server_cert: Path | None = None  # pin the server's certificate; None: take what it shows
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class FaultInfo:
    """A pending or active fault, as ListFaults reports it."""

    id: int
    kind: str
    target: str
    magnitude: float
    state: str


@dataclass(frozen=True, slots=True)
class AlarmInfo:
    """A condition of interest (Retain), as ConditionRefresh reports it."""

    id: str
    priority: int  # OPC UA Severity: the ISA-18.2 priority (core.alarms.Priority)
    active: bool
    level: str
    acked: bool
    confirmed: bool
    shelving: str
    out_of_service: bool
    message: str
    time: datetime | None
    user: str
    comment: str
    event_id: bytes

    @property
    def priority_name(self) -> str:
        return next(
            (p.name.lower() for p in sorted(Priority, reverse=True) if self.priority >= p), "low"
        )

    @property
    def state(self) -> str:
        """The ISA-18.2 state name."""
        if self.out_of_service:
            return "out_of_service"
        if self.shelving != "Unshelved":
            return "shelved"
        if self.active:
            return "active_acked" if self.acked else "active_unacked"
        return (
            "rtn_unacked" if not self.acked else ("unconfirmed" if not self.confirmed else "normal")
        )


class _Collector:
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.done = asyncio.Event()

    def event_notification(self, event: Any) -> None:
        if getattr(event, "EventType", None) == ua.NodeId(ua.ObjectIds.RefreshEndEventType):
            self.done.set()
        else:
            self.events.append(event)


@dataclass(frozen=True, slots=True)
class Status:
    line_state: str
    plant_time: datetime | None
    faults: list[FaultInfo]


def _status_name(code: Any) -> str:
    value = code.value if isinstance(code, ua.StatusCode) else int(code)
    name, doc = status_codes.get_name_and_doc(value)
    return f"0x{value:08X}" if doc.startswith("Unknown") else str(name)


def certificate_uri(path: Path) -> str | None:
    """The application URI in a certificate's subject alternative name (it must match ours)."""
    data = path.read_bytes()
    try:
        cert = x509.load_der_x509_certificate(data)
    except ValueError:
        cert = x509.load_pem_x509_certificate(data)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


async def sign_and_encrypt(
    client: Client, cert: Path, key: Path, server_cert: Path | None = None
) -> None:
    """Set up `client`'s secure channel as the plant's server asks (Basic256Sha256,
    SignAndEncrypt) with this certificate and key; the one way every OPC UA client here does.

    Raises OSError when a file cannot be read, ValueError when it is not a usable key or
    certificate.
    """
    uri = certificate_uri(cert)
    if uri:  # the session's application URI must be the one in the certificate
        client.application_uri = uri
    await client.set_security(
        SecurityPolicyBasic256Sha256,
        str(cert),
        str(key),
        server_certificate=str(server_cert) if server_cert else None,
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )


class OperatorClient:
    """A session with the plant's OPC UA server (use it as an async context manager)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._client: Any = None
        self._ns = 0

    async def __aenter__(self) -> OperatorClient:
        t = self.target
        client = Client(t.url, timeout=t.timeout_s)
        if t.user:
            client.set_user(t.user)
            client.set_password(t.password)
        try:
            if t.cert is not None or t.key is not None:
                if t.cert is None or t.key is None:
                    raise PlantError("a client certificate needs both --cert and --key")
                await sign_and_encrypt(client, t.cert, t.key, t.server_cert)
        except OSError as error:
            raise PlantError(f"cannot read the certificate or key: {error}") from None
        except ValueError as error:
            raise PlantError(f"cannot use the certificate or key: {error}") from None
        try:
            await client.connect()
        except (ua.UaStatusCodeError, ServiceError) as error:
            await _quietly_disconnect(client)
            raise _connect_error(t, error) from None
        except (OSError, TimeoutError) as error:
            await _quietly_disconnect(client)
            raise UnreachableError(f"plant unreachable at {t.url}: {_oneline(error)}") from None
        self._client = client
        try:
            self._ns = await client.get_namespace_index(t.namespace_uri)
        except (ValueError, ua.UaError):
            await self.__aexit__(None, None, None)
            raise PlantError(f"{t.url} does not serve the namespace {t.namespace_uri}") from None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await _quietly_disconnect(self._client)
            self._client = None

    def node_id(self, name: str) -> ua.NodeId:
        return ua.NodeId(name, self._ns)

    # Methods of Objects/<site>/Commands ---------------------------------------------------------
    async def call(self, method: str, *args: ua.Variant) -> list[Any]:
        """Call a Commands method: its output values, or RefusedError or NotAuthorisedError
        with the reason the server gave."""
        site = self.target.site
        request = ua.CallMethodRequest()
        request.ObjectId = self.node_id(f"{site}.{COMMANDS}")
        request.MethodId = self.node_id(f"{site}.{COMMANDS}.{method}")
        request.InputArguments = list(args)
        try:
            results = await self._client.uaclient.call([request])
        except (ua.UaStatusCodeError, ServiceError) as error:
            raise self._call_error(method, getattr(error, "code", None), str(error)) from None
        except (OSError, TimeoutError) as error:
            lost = f"lost the plant at {self.target.url}: {_oneline(error)}"
            raise UnreachableError(lost) from None
        result = results[0]
        if not result.StatusCode.is_good():
            infos = result.InputArgumentDiagnosticInfos or []
            why = "; ".join(d.AdditionalInfo for d in infos if d and d.AdditionalInfo)
            raise self._call_error(method, result.StatusCode.value, why)
        return [v.Value for v in result.OutputArguments or []]

    def _call_error(self, method: str, code: int | None, why: str) -> PlantError:
        name = _status_name(code) if code is not None else "error"
        message = f"{method}: {why or name}"
        if code == ua.StatusCodes.BadUserAccessDenied:
            return NotAuthorisedError(f"not authorised: {why or name}")
        if code in (ua.StatusCodes.BadMethodInvalid, ua.StatusCodes.BadNodeIdUnknown):
            return NoSuchMethodError(f"this plant has no {method} method ({name})")
        return RefusedError(message if why else f"{method} refused: {name}")

    async def line(self, action: str, reason: str = "") -> str:
        """Start, Stop, Reset or Abort the line; returns the line state after it."""
        out = await self.call(action.capitalize(), _string(reason))
        return str(out[0]) if out else ""

    async def inject(
        self, kind: str, target: str, magnitude: float | None, duration_s: float, reason: str
    ) -> int:
        out = await self.call(
            "InjectFault",
            _string(kind),
            _string(target),
            _double(math.nan if magnitude is None else magnitude),
            _double(duration_s),
            _string(reason),
        )
        return int(out[0])

    async def clear(self, fault_id: int, reason: str = "") -> None:
        await self.call("ClearFault", ua.Variant(fault_id, ua.VariantType.UInt32), _string(reason))

    async def quarantine(
        self, start: datetime, end: datetime, reason: str = ""
    ) -> tuple[datetime, datetime, int]:
        """Flag in genealogy the tablets pressed from `start` to `end` (UTC); returns the window
        flagged and the accepted tablets it held back."""
        out = await self.call(
            "Quarantine",
            ua.Variant(start, ua.VariantType.DateTime),
            ua.Variant(end, ua.VariantType.DateTime),
            _string(reason),
        )
        start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in out[:2])  # UTC on the wire
        return start, end, int(out[2])

    async def faults(self) -> list[FaultInfo]:
        out = await self.call("ListFaults")
        columns: Sequence[list[Any]] = [list(c or []) for c in out]
        return [FaultInfo(*row) for row in zip(*columns, strict=True)]

    # Tags ----------------------------------------------------------------------------------------
    async def write(self, tag: str, value: Any, reason: str = "") -> None:
        """Write a setpoint with a reason (the WriteSetpoint method); a server without that
        method gets a plain OPC UA write, which carries no reason."""
        try:
            await self.call("WriteSetpoint", _string(tag), setpoint_variant(value), _string(reason))
        except NoSuchMethodError:
            await self._write_node(tag, value)

    async def _write_node(self, tag: str, value: Any) -> None:
        node = self._client.get_node(self.node_id(f"{self.target.site}.{tag}"))
        try:
            vtype = await node.read_data_type_as_variant_type()
            if isinstance(value, str) and vtype in (ua.VariantType.UInt32, ua.VariantType.Int32):
                names = await (await node.get_child("0:EnumStrings")).read_value()
                states = [text.Text for text in names]
                if value not in states:
                    raise RefusedError(f"{tag}: {value!r} is not one of {', '.join(states)}")
                value = states.index(value)
            elif not isinstance(value, int | float) and vtype is not ua.VariantType.Boolean:
                raise RefusedError(f"{tag}: expected a number, got {value!r}")
            await node.write_value(ua.DataValue(ua.Variant(_coerce(value, vtype), vtype)))
        except (ua.UaStatusCodeError, ServiceError) as error:
            code = getattr(error, "code", None)
            name = _status_name(code) if code is not None else str(error)
            if code == ua.StatusCodes.BadUserAccessDenied:
                raise NotAuthorisedError(f"not authorised to write {tag} ({name})") from None
            if code == ua.StatusCodes.BadNodeIdUnknown:
                raise RefusedError(f"{tag}: no such tag on this plant") from None
            raise RefusedError(f"{tag} = {value}: refused ({name})") from None

    async def line_state(self) -> tuple[str, datetime | None]:
        """The line's state name and the plant clock (its source timestamp, UTC)."""
        node = self._client.get_node(self.node_id(f"{self.target.site}.{CLOCK_TAG}"))
        try:
            data = await node.read_data_value()
        except (ua.UaStatusCodeError, ServiceError) as error:
            raise RefusedError(f"cannot read {CLOCK_TAG}: {error}") from None
        index = data.Value.Value if data.Value is not None else None
        state = LINE_STATES[index] if isinstance(index, int) and index < len(LINE_STATES) else "?"
        return state, data.SourceTimestamp

    async def plant_clock(self) -> datetime:
        """Plant time as the server shows it: the source time of a tag stamped every second."""
        _, stamp = await self.line_state()
        if stamp is None:
            raise RefusedError(f"{CLOCK_TAG} has no source timestamp")
        return stamp

    async def status(self) -> Status:
        state, stamp = await self.line_state()
        return Status(state, stamp, await self.faults())

    # Alarms (Part 9 conditions under Objects/<site>/Alarms) -------------------------------------
    async def alarms(self) -> list[AlarmInfo]:
        """Every alarm of interest now (active, unacknowledged, unconfirmed, shelved or out of
        service), by ConditionRefresh: the way any late OPC UA client learns them."""
        client = self._client
        types = [
            await client.get_node(ua.NodeId(base)).get_child(f"{self._ns}:{name}")
            for base, name in CONDITION_TYPES
        ]
        types.append(client.get_node(ua.NodeId(ua.ObjectIds.RefreshEndEventType)))
        collector = _Collector()
        subscription = await client.create_subscription(50, collector)
        try:
            await subscription.subscribe_events(client.nodes.server, types, queuesize=10_000)
            request = ua.CallMethodRequest()
            request.ObjectId = ua.NodeId(ua.ObjectIds.ConditionType)
            request.MethodId = ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh)
            request.InputArguments = [
                ua.Variant(subscription.subscription_id, ua.VariantType.UInt32)
            ]
            result = (await client.uaclient.call([request]))[0]
            if not result.StatusCode.is_good():
                raise RefusedError(f"ConditionRefresh: {_status_name(result.StatusCode)}")
            try:
                async with asyncio.timeout(REFRESH_WAIT_S):
                    await collector.done.wait()
            except TimeoutError:
                raise UnreachableError("the plant did not finish ConditionRefresh") from None
        finally:
            with contextlib.suppress(Exception):
                await subscription.delete()
        latest: dict[str, AlarmInfo] = {}
        for event in collector.events:
            info = _alarm_info(event)
            if info is not None:
                latest[info.id] = info  # events arrive in order: the last is the current one
        return sorted(latest.values(), key=lambda a: (-a.priority, a.id))

    async def alarm_action(
        self, alarm_id: str, action: str, comment: str = "", duration_s: float | None = None
    ) -> None:
        """Acknowledge, confirm, comment, shelve (one-shot, or timed with `duration_s`),
        unshelve, remove_from_service or place_in_service an alarm, with a comment."""
        if action == "shelve" and duration_s is not None:
            action = "timed_shelve"
        method, on_shelving = ALARM_METHODS[action]
        args: list[ua.Variant] = []
        if action in ("acknowledge", "confirm", "comment"):
            current = {a.id: a for a in await self.alarms()}.get(alarm_id)
            if current is None:
                raise RefusedError(f"{alarm_id}: no such alarm needs attention now")
            args.append(ua.Variant(current.event_id, ua.VariantType.ByteString))
        if action == "timed_shelve":
            args.append(_double((duration_s or 0.0) * 1000.0))
        args.append(ua.Variant(ua.LocalizedText(comment), ua.VariantType.LocalizedText))
        condition = f"{self.target.site}.{ALARMS}.{alarm_id}"
        request = ua.CallMethodRequest()
        request.ObjectId = self.node_id(f"{condition}.ShelvingState" if on_shelving else condition)
        request.MethodId = ua.NodeId(method)
        request.InputArguments = args
        try:
            result = (await self._client.uaclient.call([request]))[0]
        except (OSError, TimeoutError) as error:
            raise UnreachableError(
                f"lost the plant at {self.target.url}: {_oneline(error)}"
            ) from None
        code = result.StatusCode
        if code.is_good():
            return
        name = _status_name(code)
        if code.value == ua.StatusCodes.BadUserAccessDenied:
            raise NotAuthorisedError(
                f"not authorised to {action.replace('_', ' ')} alarms ({name})"
            )
        if code.value in (ua.StatusCodes.BadNodeIdInvalid, ua.StatusCodes.BadNodeIdUnknown):
            raise RefusedError(f"{alarm_id}: no such alarm on this plant ({name})")
        raise RefusedError(f"{alarm_id}: {action.replace('_', ' ')} refused ({name})")


def _alarm_info(event: Any) -> AlarmInfo | None:
    name = getattr(event, "ConditionName", None)
    if not isinstance(name, str) or not name:
        return None

    def text(value: Any) -> str:
        return str(getattr(value, "Text", value) or "")

    raw_id = getattr(event, "EventId", b"")
    return AlarmInfo(
        id=name,
        priority=int(getattr(event, "Severity", 0) or 0),
        active=bool(getattr(event, "ActiveState/Id", False)),
        level=text(getattr(event, "Level", "")),
        acked=bool(getattr(event, "AckedState/Id", False)),
        confirmed=bool(getattr(event, "ConfirmedState/Id", False)),
        shelving=text(getattr(event, "Shelving", "")) or "Unshelved",
        out_of_service=bool(getattr(event, "OutOfServiceState/Id", False)),
        message=text(getattr(event, "Message", "")),
        time=getattr(event, "Time", None),
        user=text(getattr(event, "ClientUserId", "")),
        comment=text(getattr(event, "Comment", "")),
        event_id=bytes(raw_id or b""),
    )


def _string(text: str) -> ua.Variant:
    return ua.Variant(text, ua.VariantType.String)


def _double(number: float) -> ua.Variant:
    return ua.Variant(float(number), ua.VariantType.Double)


def setpoint_variant(value: Any) -> ua.Variant:
    """A setpoint value as the `Value` argument of `WriteSetpoint` (the server checks it against
    the tag): Boolean, Int64, Double, or else its text as String. The edge sends it the same way."""
    if isinstance(value, bool):
        return ua.Variant(value, ua.VariantType.Boolean)
    if isinstance(value, int):
        return ua.Variant(value, ua.VariantType.Int64)
    if isinstance(value, float):
        return ua.Variant(value, ua.VariantType.Double)
    return ua.Variant(str(value), ua.VariantType.String)


def _coerce(value: Any, vtype: ua.VariantType) -> Any:
    if vtype is ua.VariantType.Double or vtype is ua.VariantType.Float:
        return float(value)
    if vtype is ua.VariantType.Boolean:
        return bool(value)
    return int(value)


def _oneline(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _connect_error(target: Target, error: Exception) -> PlantError:
    code = getattr(error, "code", None)
    name = _status_name(code) if code is not None else _oneline(error)
    if code in DENIED:
        who = f"user {target.user!r}" if target.user else "anonymous"
        return NotAuthorisedError(f"not authorised: {target.url} refused {who} ({name})")
    return UnreachableError(f"plant at {target.url} refused the session: {name}")


async def _quietly_disconnect(client: Any) -> None:
    # A half-open session has nothing left worth reporting.
    with contextlib.suppress(Exception):
        await client.disconnect()
