"""`plant health opcua|edge|historian|controller`: is this service up? Exit 0 yes, 1 no.

Each check reads the same `PLANT_<SERVICE>_*` settings as the service it checks, so in a
container it runs with the service's own environment (the docker-compose healthcheck):

- opcua: opens a session on the server (anonymous, unsecured endpoint when the server offers
  one) and reads `Server.ServerStatus.State`, which must be Running. A server that offers only
  signed and encrypted endpoints is checked up to its discovery service (GetEndpoints).
- edge, historian, controller: each publishes a retained `online` on
  `pcmm/v1/<site>/status/<service>` after connecting to the broker, and its Last Will (or a
  clean stop) turns it `offline`. The check logs in with the service's own MQTT user under
  another client id (reusing the service's id would disconnect the service) and reads that
  retained message.
- historian, also: InfluxDB must take its writes. The check makes the one authenticated call
  a write-only token allows, an empty write to the bucket, with the historian's own client and
  settings (URL, API, token or user, org, bucket: `check_write_access` of its sink), so a wrong or
  revoked token reads unhealthy instead of the historian spooling while "healthy".

One line on stderr says why a check failed; no traceback.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import paho.mqtt.client as mqtt
import typer
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError
from rich.console import Console

from bridge.mqtt_session import MqttConfig, make_client
from core import topics

if TYPE_CHECKING:
    from bridge.edge.settings import EdgeSettings
    from bridge.historian.influx_api import CheckedSink
    from bridge.historian.settings import HistorianSettings
    from controller.settings import ControllerSettings

app = typer.Typer(
    help="Health checks of the plant services (exit 0 healthy, 1 not), e.g. for Docker.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True, highlight=False)

Timeout = Annotated[float, typer.Option(help="Seconds to wait for an answer.", min=0.1)]


class UnhealthyError(Exception):
    """The service is not healthy; the message says why."""


@dataclass(frozen=True, slots=True)
class Broker:
    """Where a service's broker is, who it logs in as, and the site of its status topic."""

    host: str
    port: int
    username: str
    password: str
    site: str
    tls_ca: Path | None = None
    tls: bool = False

    def login(self, client_id: str) -> MqttConfig:
        """The check's own login: the service's user under another client id."""
        login = (self.host, self.port, self.username, self.password, client_id)
        return MqttConfig(*login, tls=self.tls, tls_ca=self.tls_ca, keepalive_s=10)


def broker_of(s: EdgeSettings | HistorianSettings | ControllerSettings) -> Broker:
    """The broker of a service (every service names its MQTT settings alike)."""
    c = MqttConfig.of(s)
    return Broker(c.host, c.port, c.username, c.password, s.site_id, c.tls_ca, c.tls)


def retained_status(broker: Broker, service: str, timeout_s: float) -> str:
    """The retained payload of `pcmm/v1/<site>/status/<service>`, or raise `UnhealthyError`."""
    topic = topics.SiteTopics(broker.site).status(service)
    done = threading.Event()
    found: dict[str, str] = {}
    login = broker.login(f"health-{service}-{os.getpid()}")
    client = make_client(login)

    def on_connect(c: mqtt.Client, u: object, f: object, reason: ReasonCode, p: object) -> None:
        if reason.is_failure:
            found["error"] = f"broker refused {broker.username}: {reason}"
            done.set()
        else:
            c.subscribe(topic, qos=1)

    def on_subscribe(
        c: mqtt.Client, u: object, mid: int, codes: list[ReasonCode], p: object
    ) -> None:
        if any(code.is_failure for code in codes):
            found["error"] = f"{broker.username} may not read {topic}: {codes[0]}"
            done.set()

    def on_message(c: mqtt.Client, u: object, message: mqtt.MQTTMessage) -> None:
        found["status"] = message.payload.decode(errors="replace")
        done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(login.host, login.port, keepalive=login.keepalive_s)
    except OSError as error:
        raise UnhealthyError(f"broker {login.where} unreachable: {error}") from None
    client.loop_start()
    try:
        if not done.wait(timeout_s):
            raise UnhealthyError(f"no retained status on {topic} within {timeout_s:g} s")
    finally:
        client.disconnect()
        client.loop_stop()
    if "error" in found:
        raise UnhealthyError(found["error"])
    return found["status"]


def require_online(broker: Broker, service: str, timeout_s: float) -> str:
    status = retained_status(broker, service, timeout_s)
    if status != "online":
        raise UnhealthyError(f"{service} of {broker.site} says {status!r}")
    return f"{service} of {broker.site} online"


def influx_write_access(sink: CheckedSink) -> None:
    """InfluxDB takes this sink's writes (one empty write), or raise `UnhealthyError`."""
    from bridge.historian.influx import AccessError  # noqa: PLC0415

    try:
        sink.check_write_access()
    except AccessError as error:
        raise UnhealthyError(str(error)) from None
    finally:
        sink.close()


async def opcua_state(url: str, timeout_s: float) -> str:
    """Read Server.ServerStatus.State over an anonymous session; discovery-only if secured."""
    from asyncua import Client, ua  # noqa: PLC0415  (asyncua is slow to import; only here)

    client = Client(url, timeout=timeout_s)
    try:
        endpoints = await client.connect_and_get_server_endpoints()
    except (OSError, TimeoutError, ua.UaError) as error:
        raise UnhealthyError(f"OPC UA server {url} unreachable: {error or 'timeout'}") from None
    if not any(e.SecurityMode == ua.MessageSecurityMode.None_ for e in endpoints):
        return f"OPC UA server {url} answers discovery (secured endpoints only)"
    try:
        async with Client(url, timeout=timeout_s) as session:
            node = session.get_node(ua.ObjectIds.Server_ServerStatus_State)
            state = await node.read_value()
    except (OSError, TimeoutError, ua.UaError) as error:
        raise UnhealthyError(f"OPC UA session on {url} failed: {error or 'timeout'}") from None
    if state != ua.ServerState.Running:
        raise UnhealthyError(f"OPC UA server {url} is {ua.ServerState(state).name}")
    return f"OPC UA server {url} running"


def _run(check: Callable[[], str]) -> None:
    # One line whatever the width (rich wraps at 80 columns without a terminal, which is how
    # Docker runs a healthcheck), and a server's words printed as they are (no markup).
    try:
        message = check()
    except UnhealthyError as error:
        err.print(f"unhealthy: {error}", soft_wrap=True, markup=False)
        raise typer.Exit(1) from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(map(str, first["loc"]))
        err.print(f"unhealthy: settings: {where}: {first['msg']}", soft_wrap=True, markup=False)
        raise typer.Exit(1) from None
    err.print(f"healthy: {message}", soft_wrap=True, markup=False)


@app.command()
def opcua(timeout: Timeout = 5.0) -> None:
    """The twin's OPC UA server (settings: PLANT_OPCUA_*)."""
    from opcua_server.settings import OpcUaSettings  # noqa: PLC0415

    def check() -> str:
        s = OpcUaSettings()
        # From inside the server's container: loopback, whatever host name the URLs carry.
        host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
        url = f"opc.tcp://{host}:{s.port}/pcmm/{s.site_id}"
        return asyncio.run(opcua_state(url, timeout))

    _run(check)


@app.command()
def edge(timeout: Timeout = 5.0) -> None:
    """The edge gateway (settings: PLANT_EDGE_*)."""
    from bridge.edge.settings import EdgeSettings  # noqa: PLC0415

    def check() -> str:
        return require_online(broker_of(EdgeSettings()), "edge", timeout)

    _run(check)


@app.command()
def historian(timeout: Timeout = 5.0) -> None:
    """The historian (settings: PLANT_HISTORIAN_*): online on MQTT, its InfluxDB token good."""
    from bridge.historian.influx_api import sink_from_settings  # noqa: PLC0415
    from bridge.historian.settings import HistorianSettings  # noqa: PLC0415

    def check() -> str:
        s = HistorianSettings()
        status = require_online(broker_of(s), "historian", timeout)
        influx_write_access(sink_from_settings(s, timeout_s=timeout))
        return f"{status}, InfluxDB {s.influx_url} takes its writes to {s.influx_bucket!r}"

    _run(check)


@app.command()
def controller(timeout: Timeout = 5.0) -> None:
    """The supervisory controller (settings: PLANT_CONTROLLER_*)."""
    from controller.settings import ControllerSettings  # noqa: PLC0415

    def check() -> str:
        return require_online(broker_of(ControllerSettings()), "controller", timeout)

    _run(check)
