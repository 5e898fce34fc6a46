"""`plant demo`: the whole loop on one machine, without Docker, in one command.

It starts, as child processes with generated settings and secrets: Mosquitto (the local
binary, configured from deploy/mosquitto), the local influxd when installed (or uses the
InfluxDB PLANT_HISTORIAN_INFLUX_URL names), per site a twin behind its OPC UA server, the
historian before any edge, and per site an edge and a supervisory controller; waits until
each passes its health check (the compose healthchecks' own functions); then shows the plant
live as the broker's `operator` user sees it, until Ctrl-C or `--duration`. At the stop the
sources stop first, the historian is drained (drain.py) and the run report written when
asked, then the historian and the servers stop; what does not stop within a bound is killed.

With `--central` (the central tier, docs/scaling.md): each site's edge and controller use the
site's own Mosquitto, bridged to a central Mosquitto (deploy/mosquitto/bridge.conf), on which
two historians share one subscription; the live view and the drain use the centre.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live

from apps.demo.drain import drain_historian
from apps.demo.services import (
    BROKER_STOP_TIMEOUT_S,
    STOP_TIMEOUT_S,
    Demo,
    DemoError,
    Influx,
    LocalInflux,
    Site,
    find_influxd,
    influx_from_env,
    influx_hint,
    influx_query,
    is_broker,
    is_historian,
    make_sites,
    query_hint,
    wait_for_influx,
)
from apps.demo.view import render
from apps.demo.watch import Board, Watcher, describe
from apps.health import (
    Broker,
    UnhealthyError,
    influx_write_access,
    opcua_state,
    require_online,
    retained_status,
)
from apps.launcher import Child, free_port, stop_all
from apps.servers import find_mosquitto
from bridge.historian.influx_api import make_sink
from core.layout import load_layout, vary_for_site
from core.payload import Event
from core.tags import TagRegistry, build_registry

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

HEALTH_TIMEOUT_S = 90.0
CHECK_TIMEOUT_S = 3.0


class StoppedError(Exception):
    """Ctrl-C (or SIGTERM) arrived while the demo was starting."""


def _plant_command() -> str:
    """How the user runs `plant` from another terminal: this install's own script."""
    script = Path(sys.executable).with_name("plant")
    if script.exists():
        return str(script)
    return shutil.which("plant") or f"{sys.executable} -m apps.cli"


def _registry(site: Site) -> TagRegistry:
    return build_registry(vary_for_site(load_layout(None), site.id, site.variation).modules)


def _wait_healthy(
    child: Child, check: Callable[[], str], stop: threading.Event, timeout_s: float
) -> str:
    """Run a health check until it passes; fail if the child exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while True:
        if stop.is_set():
            raise StoppedError
        if not child.running:
            raise DemoError(f"{child.name} exited at start:\n{child.tail()}")
        try:
            return check()
        except UnhealthyError as error:
            last = str(error)
        if time.monotonic() > deadline:
            raise DemoError(f"{child.name} not healthy after {timeout_s:g} s: {last}")
        stop.wait(0.5)


def _broker(demo: Demo, user: str, site: str, port: int | None = None) -> Broker:
    return Broker(
        host="127.0.0.1",
        port=demo.mqtt_port if port is None else port,
        username=user,
        password=demo.mqtt_password(user),
        site=site,
    )


def run_demo(
    demo: Demo,
    mosquitto: Path,
    stop: threading.Event,
    started: list[Child],
    say: Callable[[str], None],
) -> None:
    """Start every service healthy, in dependency order; `started` lists what is running."""
    broker = demo.broker(mosquitto)
    started.append(broker.process())
    broker.start()
    say(
        f"{broker.name} pid {broker.pid}: mqtt://127.0.0.1:{demo.mqtt_port}"
        + (" (the centre: historians and this view)" if demo.central else "")
    )
    site_brokers: list[tuple[Site, Child]] = []
    for site in demo.sites if demo.central else []:
        own = demo.site_broker(site, mosquitto)
        site_brokers.append((site, own.process()))
        started.append(own.process())
        own.start()
        say(f"{own.name} pid {own.pid}: mqtt://127.0.0.1:{own.port} (bridged to the centre)")
    if demo.local_influx is not None:
        local, binary = demo.local_influx
        local.write_config()
        server = local.child(binary, dict(demo.base_env), demo.logs / "influxd.log")
        server.start()
        started.append(server)
        wait_for_influx(server, local.url, 30)
        influx_query(local.url, f'CREATE DATABASE "{local.db}"')
        demo.influx = Influx(local.url, "", "pcmm", local.db, api="v1")
        say(f"influxd pid {server.pid}: {local.url} (database {local.db}, data in {local.folder})")

    servers = [demo.opcua(site) for site in demo.sites]
    for child in servers:
        child.start()
        started.append(child)
    for child, site in zip(servers, demo.sites, strict=True):

        def serving(url: str = site.opcua_url) -> str:
            return asyncio.run(opcua_state(url, CHECK_TIMEOUT_S))

        _wait_healthy(child, serving, stop, HEALTH_TIMEOUT_S)
        say(f"{child.name} pid {child.pid}: {site.opcua_url} (speed x{demo.speed:g})")

    def online(user: str, site: str, port: int | None = None) -> Callable[[], str]:
        return lambda: require_online(_broker(demo, user, site, port), user, CHECK_TIMEOUT_S)

    for site, own_broker in site_brokers:
        # The link's state, retained at the centre by the bridge (1 up, 0 down).
        def linked(site: str = site.id) -> str:
            state = retained_status(_broker(demo, "operator", site), "bridge", CHECK_TIMEOUT_S)
            if state != "1":
                raise UnhealthyError(f"the bridge of {site} says {state!r}")
            return f"the bridge of {site} is up"

        _wait_healthy(own_broker, linked, stop, HEALTH_TIMEOUT_S)
        say(f"bridge-{site.id}: {own_broker.name} is linked to the centre")

    # The historian first: the broker queues messages only for a session that exists, so an
    # edge that published before the historian's first subscription would publish past it
    # (seen: the first 142 samples of a run missing). Healthy means subscribed: it says
    # `online` on the connection it subscribed on, after the subscription.
    first: list[tuple[Child, Callable[[], str]]] = []
    for historian in demo.historians():
        influx = demo.influx
        assert influx is not None
        # its own topics' site level
        historian_online = online("historian", demo.historian_site(historian))

        def historian_ok(
            influx: Influx = influx, historian_online: Callable[[], str] = historian_online
        ) -> str:
            status = historian_online()
            # As `plant health historian`: one empty write with the historian's settings.
            sink = make_sink(
                influx.api,
                influx.url,
                influx.bucket,
                token=influx.token,
                org=influx.org,
                timeout_s=CHECK_TIMEOUT_S,
            )
            influx_write_access(sink)
            return f"{status}, InfluxDB {influx.url} takes its writes"

        first.append((historian, historian_ok))
    services = [
        (demo.edge(site), online("edge", site.id, demo.site_port(site))) for site in demo.sites
    ]
    services += [
        (demo.controller_for(site), online("controller", site.id, demo.site_port(site)))
        for site in demo.sites
    ]
    for group in (first, services):
        for child, _ in group:
            child.start()
            started.append(child)
        for child, check in group:
            _wait_healthy(child, check, stop, HEALTH_TIMEOUT_S)
            say(f"{child.name} pid {child.pid}: healthy")


def _shutdown(
    started: list[Child], say: Callable[[str], None], drained: Callable[[], None] | None = None
) -> None:
    """Sources first, then the historian once it has stored what they sent, the servers last.

    The plant services stop while they still reach the broker (to say offline); `drained`
    (when the historian runs) waits until it has stored everything the broker holds for it,
    and uses it (the run report) before the historian and InfluxDB stop.
    """

    def server(child: Child) -> bool:
        return is_broker(child) or child.name == "influxd"

    sources = [c for c in started if not server(c) and not is_historian(c)]
    historian = [c for c in started if is_historian(c)]
    servers = [c for c in started if server(c)]
    killed = stop_all(sources, STOP_TIMEOUT_S)
    if drained is not None and historian and all(c.running for c in historian):
        try:
            drained()
        except DemoError as error:
            err.print(f"[red]error:[/] {error}")
    killed += stop_all(historian, STOP_TIMEOUT_S) + stop_all(servers, BROKER_STOP_TIMEOUT_S)
    if killed:
        say(f"killed after the stop timeout: {', '.join(killed)}")
    say(f"stopped {len(started)} processes")


def demo(
    speed: Annotated[
        float, typer.Option(help="Plant seconds per wall second.", min=0.01, max=10_000.0)
    ] = 10.0,
    sites: Annotated[
        int, typer.Option(help="Pods: a twin, OPC UA server, edge and controller each.", min=1)
    ] = 1,
    central: Annotated[
        bool,
        typer.Option(
            "--central",
            help="The central tier: each site its own broker, bridged to a central broker "
            "with two historians.",
        ),
    ] = False,
    duration: Annotated[
        float, typer.Option(help="Stop after this many wall seconds; 0: at Ctrl-C.", min=0.0)
    ] = 0.0,
    view: Annotated[
        bool, typer.Option("--view/--no-view", help="Live terminal view, or plain lines.")
    ] = True,
    controller: Annotated[
        bool,
        typer.Option(
            "--controller/--watch-only", help="The controller acts, or only watches and alarms."
        ),
    ] = True,
    historian: Annotated[
        bool,
        typer.Option(
            "--historian/--no-historian",
            help="Store into InfluxDB (the local influxd, or PLANT_HISTORIAN_INFLUX_URL's), "
            "or run the loop without a historian.",
        ),
    ] = True,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="Keep secrets, logs and spools here; default: a temporary folder."),
    ] = None,
    mosquitto: Annotated[
        Path | None, typer.Option(help="The mosquitto binary; default: from PATH.")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="At the stop, write the run report (HTML) of site1 to this file."),
    ] = None,
) -> None:
    """Run the whole loop on this machine without Docker; Ctrl-C stops everything.

    Needs a local `mosquitto`. With --central each site gets its own broker, bridged to a
    central one where two historians share the load. The historian stores into a local
    `influxd` the demo starts (Debian: apt-get install -y influxdb), or into the InfluxDB
    PLANT_HISTORIAN_INFLUX_URL (with _TOKEN, _ORG, _BUCKET) names; without either, or with
    --no-historian, it is off.
    Other PLANT_<SERVICE>_* variables reach their services, except those the demo sets.
    """
    try:
        binary = find_mosquitto(mosquitto)
    except DemoError as error:
        err.print(f"[red]error:[/] {error}")
        raise typer.Exit(2) from None
    keep = state_dir is not None
    state = (
        state_dir.resolve()
        if state_dir is not None
        else Path(tempfile.mkdtemp(prefix="pcmm-demo-"))
    )
    state.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    # The health checks' asyncua sessions log what they report themselves.
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    config = Demo(
        state=state,
        sites=make_sites(sites),
        mqtt_port=free_port(),
        speed=speed,
        controller=controller,
        influx=influx_from_env(os.environ) if historian else None,
        base_env=dict(os.environ),
        site_ports={f"site{i}": free_port() for i in range(1, sites + 1)} if central else {},
    )
    if historian and config.influx is None and (influxd := find_influxd()) is not None:
        local = LocalInflux(state / "influxdb", port=free_port(), rpc_port=free_port())
        config.local_influx = (local, influxd)
    started: list[Child] = []
    code = 0
    say = out.print

    def drained() -> None:
        took = drain_historian(config)
        say(f"historian drained: everything sent is stored ({took:.1f} s)")
        if report is not None and config.influx is not None:
            from apps.report import write_report  # noqa: PLC0415 (matplotlib: only here)

            influx = config.influx
            db = influx.bucket.split("/", 1)[0]
            try:
                write_report(influx.url, db, config.sites[0].id, report, token=influx.token)
            except Exception as error:  # the run is over: say why, never a traceback
                err.print(f"[red]error:[/] no report: {type(error).__name__}: {error}")
            else:
                say(f"report: {report.resolve()}")

    try:
        config.prepare()
        say(f"state folder: {state}" + ("" if keep else " (removed at the end)"))
        run_demo(config, binary, stop, started, say)
        plant = _plant_command()
        if config.influx is None:
            say(influx_hint() if historian else "historian off (--no-historian)")
            if report is not None:
                err.print("[red]error:[/] no report without the historian")
        else:
            for line in query_hint(config.influx, plant):
                say(line)
        hints = [
            f"from another terminal, as operator of {site.id}: {config.fault_command(site, plant)}"
            for site in config.sites
        ]
        hints.append("Ctrl-C stops everything")
        say(f"ready: {len(started)} processes healthy")
        for hint in hints:
            say(hint)
        code = watch(config, started, stop, duration, view, hints)
    except StoppedError:
        pass
    except DemoError as error:
        err.print(f"[red]error:[/] {error}")
        code = 1
    finally:
        # Into our own InfluxDB, or for the report: a user's InfluxDB may not let us read.
        drain = config.influx is not None and (config.local_influx is not None or bool(report))
        _shutdown(started, say, drained if drain else None)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        config.cleanup()
        if not keep:
            shutil.rmtree(state, ignore_errors=True)
    if code:
        raise typer.Exit(code)


def watch(
    demo: Demo,
    children: list[Child],
    stop: threading.Event,
    duration: float,
    view: bool,
    hints: list[str],
) -> int:
    """Show the plant until stopped; 1 if a service died on the way, else 0."""
    board = Board({site.id: _registry(site) for site in demo.sites})

    def print_event(event: Event) -> None:
        out.print(f"event {event.site} {event.kind}: {describe(event)}")

    # Without the view only events are printed: the telemetry is not subscribed to (decoding
    # it took 7 % of a core per demo at 50x, measured in the acceptance test's run).
    watcher = Watcher(
        board,
        demo.mqtt_port,
        demo.mqtt_password("operator"),
        None if view else print_event,
        telemetry=view,
    )
    watcher.start()
    deadline = time.monotonic() + duration if duration > 0 else None
    try:
        if view:
            # Its own console: `out` does not wrap (one line per command), the view must.
            screen = Console(highlight=False)
            with Live(render(board, hints), console=screen, refresh_per_second=2) as live:
                return _loop(children, stop, deadline, lambda: live.update(render(board, hints)))
        return _loop(children, stop, deadline, lambda: None)
    finally:
        watcher.stop()


def _loop(
    children: list[Child], stop: threading.Event, deadline: float | None, tick: Callable[[], None]
) -> int:
    while not stop.wait(0.5):
        tick()
        for child in children:
            if not child.running:
                err.print(f"[red]error:[/] {child.name} exited:\n{child.tail()}")
                return 1
        if deadline is not None and time.monotonic() >= deadline:
            return 0
    return 0
