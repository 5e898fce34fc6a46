"""The demo's services: generated secrets and settings, and each service as a child process.

Everything the docker-compose stack gets from `plant stack init` and its environment blocks is
made here for one machine: the secrets (apps/stack.py's generator, into the demo's state
folder), the broker's folder (deploy/mosquitto's config and ACL, a passwd of the generated
passwords, a free loopback port), and for every plant service the same `PLANT_*` variables
compose gives it, with secrets passed as `PLANT_<NAME>__FILE` through `python -m apps.envfiles`
as in the image, so no password is ever on a command line.

Each child is started by apps/launcher.py in its own session (process group): Ctrl-C in the
terminal reaches only the demo, which then stops the children in order, within a bound, and
kills what is left. The broker is apps/servers.py's Mosquitto starter, as in the tests.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from apps.launcher import Child, LaunchError, free_port, stop_all
from apps.servers import (
    DEPLOY_MOSQUITTO,
    CentralLink,
    Mosquitto,
    give_to_mosquitto,
    mosquitto_user,
)
from apps.stack import (
    MQTT_USERS,
    bridge_users,
    central_links,
    init_secrets,
    read_secret,
    secret_names,
    write_mosquitto_config,
    write_opcua_users,
)

SITE_VARIATION = 0.05  # equipment variation of every site after the first (as compose's site2)
CENTRAL_HISTORIANS = 2  # historians on the central broker (--central): one shared subscription
STOP_TIMEOUT_S = 10.0  # how long the plant services get to stop before SIGKILL
BROKER_STOP_TIMEOUT_S = 5.0
HISTORIAN_INFLUX_KEYS = ("URL", "TOKEN", "ORG", "BUCKET")


# The demo's errors are the launcher's: something the user can fix, said in one line.
DemoError = LaunchError


@dataclass(frozen=True, slots=True)
class Site:
    """One pod: its twin and OPC UA server, its edge and its controller."""

    id: str
    seed: int
    variation: float
    opcua_port: int

    @property
    def opcua_url(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.opcua_port}/pcmm/{self.id}"


def make_sites(count: int, ports: Callable[[], int] = free_port) -> list[Site]:
    """site1 with the nominal pod, then site2.. each with its own seed and equipment draw."""
    return [
        Site(f"site{i}", seed=i, variation=0.0 if i == 1 else SITE_VARIATION, opcua_port=ports())
        for i in range(1, count + 1)
    ]


@dataclass(frozen=True, slots=True)
class Influx:
    """Where the historian writes, and through which API ("auto": as the server reports)."""

    url: str
    token: str
    org: str
    bucket: str
    api: Literal["auto", "v1", "v2"] = "auto"


def influx_from_env(environ: Mapping[str, str]) -> Influx | None:
    """The historian's InfluxDB as the user configured it (PLANT_HISTORIAN_INFLUX_*), if any."""
    values = {k: environ.get(f"PLANT_HISTORIAN_INFLUX_{k}", "") for k in HISTORIAN_INFLUX_KEYS}
    if not values["URL"]:
        return None
    return Influx(
        values["URL"], values["TOKEN"], values["ORG"] or "pcmm", values["BUCKET"] or "pcmm"
    )


def influx_hint() -> str:
    """Why the historian is off (no influxd here), and how to turn it on."""
    return (
        f"historian off: no local influxd ({INFLUXD_INSTALL}, and the demo starts one), "
        "or set PLANT_HISTORIAN_INFLUX_URL (and _TOKEN, _ORG, _BUCKET) to your InfluxDB"
    )


def query_hint(influx: Influx, plant: str) -> list[str]:
    """How to read what the historian stores, from another terminal."""
    url, db = influx.url, influx.bucket.split("/", 1)[0]
    auth = f" -H 'Authorization: Token {influx.token}'" if influx.token else ""
    return [
        f"the historian stores into {url} (database {db}): query it with InfluxQL, e.g. "
        f"curl -sG{auth} {url}/query --data-urlencode db={db} --data-urlencode "
        '"q=SELECT last(api_pct) FROM telemetry GROUP BY site"',
        f"scores and a run report from what it stored: {plant} kpi --from-influx --url {url} "
        f"--db {db} --site site1; {plant} report --url {url} --db {db} --site site1 -o run.html",
    ]


INFLUXD_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{folder}/meta"
  logging-enabled = false

[data]
  dir = "{folder}/data"
  wal-dir = "{folder}/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"

[coordinator]
  log-queries-after = "0s"

[retention]
  enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = {auth}
  log-enabled = false
  write-tracing = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false
"""
# graphite, collectd, opentsdb and udp listeners are off unless configured: none are.
INFLUXD_INSTALL = "apt-get install -y influxdb"


@dataclass(frozen=True, slots=True)
class LocalInflux:
    """An influxd 1.x of our own: its folder (config, data, log) and loopback ports."""

    folder: Path
    port: int
    rpc_port: int
    db: str = "pcmm"
    auth: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.folder / "influxdb.conf"

    def write_config(self) -> None:
        """The generated configuration: loopback only, everything but HTTP off."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            INFLUXD_CONFIG.format(
                folder=self.folder,
                http_port=self.port,
                rpc_port=self.rpc_port,
                auth="true" if self.auth else "false",
            )
        )

    def child(self, binary: Path, env: dict[str, str], log: Path) -> Child:
        return Child("influxd", [str(binary), "-config", str(self.config)], env, self.folder, log)


def find_influxd(which: Callable[[str], str | None] = shutil.which) -> Path | None:
    """The local influxd (Debian's `influxdb` package), if installed."""
    found = which("influxd") or shutil.which("influxd", path="/usr/sbin:/usr/bin")
    return Path(found) if found else None


def wait_for_influx(child: Child, url: str, timeout_s: float) -> None:
    """Until `GET /ping` answers 204 (the port opens a moment before it does)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if not child.running:
            raise DemoError(f"{child.name} exited at start:\n{child.tail()}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=1) as reply:
                if reply.status == 204:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise DemoError(f"{child.name} not answering {url}/ping after {timeout_s:g} s")
        time.sleep(0.02)


def influx_query(url: str, q: str, *, db: str = "", auth: tuple[str, str] | None = None) -> None:
    """Run one InfluxQL statement that changes something (POST /query), e.g. CREATE DATABASE."""
    params = {"q": q, **({"db": db} if db else {})}
    request = urllib.request.Request(
        f"{url}/query", data=urllib.parse.urlencode(params).encode(), method="POST"
    )
    if auth is not None:  # 1.x reads u and p from the URL only, and HTTP Basic anywhere
        pair = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {pair}")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            body = json.load(reply)
    except (OSError, ValueError) as error:  # HTTPError is an OSError
        raise DemoError(f"InfluxDB {url} did not run {q!r}: {error}") from None
    errors = [r["error"] for r in body.get("results", []) if isinstance(r, dict) and "error" in r]
    if errors:
        raise DemoError(f"InfluxDB {url} did not run {q!r}: {errors[0]}")


def is_broker(child: Child) -> bool:
    """`mosquitto`, or with --central `mosquitto-central` and `mosquitto-<site>`."""
    return child.name == "mosquitto" or child.name.startswith("mosquitto-")


def is_historian(child: Child) -> bool:
    """`historian`, or with --central `historian-1`, `historian-2`."""
    return child.name == "historian" or child.name.startswith("historian-")


def stop_services(started: list[Child]) -> list[str]:
    """Plant services first (they still reach the broker to say offline), the brokers last;
    the names of those killed after their stop timeout (the benchmarks' stop; the demo drains
    its historian in between)."""
    plant = [c for c in started if not is_broker(c)]
    broker = [c for c in started if is_broker(c)]
    return stop_all(plant, STOP_TIMEOUT_S) + stop_all(broker, BROKER_STOP_TIMEOUT_S)


@dataclass
class Demo:
    """The demo's configuration: where its files are, its sites, ports and credentials.

    `mqtt_port` is the broker the historian and the live view use: the only one, or with
    `site_ports` (--central) the central broker, to which each site's own broker (its edge's
    and controller's, on its port of `site_ports`) is bridged (deploy/mosquitto/bridge.conf),
    and on which CENTRAL_HISTORIANS historians share one subscription.
    """

    state: Path
    sites: list[Site]
    mqtt_port: int
    speed: float
    controller: bool = True
    influx: Influx | None = None
    local_influx: tuple[LocalInflux, Path] | None = None  # ours to start: where, and the binary
    python: str = sys.executable
    base_env: dict[str, str] = field(default_factory=dict)
    broker_home: Path | None = None  # made by `broker_dir`; removed by `cleanup`
    site_ports: dict[str, int] = field(default_factory=dict)  # --central: site -> its broker
    site_homes: dict[str, Path] = field(default_factory=dict)  # their folders (`site_dir`)

    @property
    def central(self) -> bool:
        return bool(self.site_ports)

    def site_port(self, site: Site) -> int:
        """The broker of the site's edge and controller: its own (--central), else the one."""
        return self.site_ports.get(site.id, self.mqtt_port)

    def site_dir(self, site: Site) -> Path:
        if site.id not in self.site_homes:
            self.site_homes[site.id] = broker_home(self.state, f"mosquitto-{site.id}")
        return self.site_homes[site.id]

    @property
    def secrets(self) -> Path:
        return self.state / "secrets"

    @property
    def broker_dir(self) -> Path:
        # Started as root, mosquitto drops to its own user, which must reach this folder: a
        # state folder under a private one (pytest's, a home) would not let it through.
        if self.broker_home is None:
            self.broker_home = broker_home(self.state)
        return self.broker_home

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    def secret(self, name: str) -> str:
        return read_secret(self.secrets, name)

    def mqtt_password(self, user: str) -> str:
        return self.secret(f"mqtt_{user}_password")

    def links(self) -> list[CentralLink]:
        """--central: each site broker's bridge to the central broker (none without)."""
        if not self.central:
            return []
        return central_links(self.secrets, [s.id for s in self.sites], "127.0.0.1", self.mqtt_port)

    def prepare(self) -> None:
        """Secrets, the OPC UA users file and the brokers' folders, as `plant stack init` does."""
        self.logs.mkdir(parents=True, exist_ok=True)
        bridges = bridge_users(s.id for s in self.sites) if self.central else ()
        init_secrets(self.secrets, {}, secret_names((*MQTT_USERS, *bridges)))
        write_opcua_users(self.secrets)
        # Only this user (and the services it starts) reads the secrets of the demo.
        self.secrets.chmod(0o700)
        for path in self.secrets.iterdir():
            path.chmod(0o400)
        user = mosquitto_user()
        uid = user.pw_uid if user else os.geteuid()
        links = self.links()
        write_mosquitto_config(self.secrets, DEPLOY_MOSQUITTO, self.broker_dir, uid, bridges=links)
        broker = self.broker(None)
        broker.write_config(broker.conf)  # the copy `write_mosquitto_config` just made
        give_to_mosquitto(self.broker_dir, *self.broker_dir.iterdir())
        for site, link in zip(self.sites if links else [], links, strict=True):
            folder = self.site_dir(site)
            write_mosquitto_config(self.secrets, DEPLOY_MOSQUITTO, folder, uid)
            local = self.site_broker(site, None)
            local.write_config(local.conf, central=link)
            give_to_mosquitto(folder, *folder.iterdir())

    def cleanup(self) -> None:
        """Remove the brokers' folders that live outside the state folder."""
        for home in [self.broker_home, *self.site_homes.values()]:
            if home is not None and not home.is_relative_to(self.state):
                shutil.rmtree(home, ignore_errors=True)

    def broker(self, binary: Path | None) -> Mosquitto:
        """The broker on the demo's port from its folder (with --central: the central one),
        logging with the services."""
        name = "mosquitto-central" if self.central else "mosquitto"
        return Mosquitto(
            port=self.mqtt_port,
            folder=self.broker_dir,
            binary=binary,
            log_file=self.logs / f"{name}.log",
            env=dict(self.base_env),
            name=name,
        )

    def site_broker(self, site: Site, binary: Path | None) -> Mosquitto:
        """--central: the site's own broker, bridged to the central one."""
        return Mosquitto(
            port=self.site_ports[site.id],
            folder=self.site_dir(site),
            binary=binary,
            log_file=self.logs / f"mosquitto-{site.id}.log",
            env=dict(self.base_env),
            name=f"mosquitto-{site.id}",
        )

    def _plant(self, name: str, command: list[str], env: dict[str, str]) -> Child:
        # The image's entry point: PLANT_X__FILE -> PLANT_X, then exec the service.
        argv = [self.python, "-m", "apps.envfiles", self.python, "-m", "apps.cli", *command]
        merged = {**self.base_env, **env}
        for key in env:
            # A PLANT_X left in the user's environment would win over the demo's PLANT_X__FILE.
            if key.endswith("__FILE"):
                merged.pop(key.removesuffix("__FILE"), None)
        return Child(
            name=name, argv=argv, env=merged, cwd=self.state / name, log=self.logs / f"{name}.log"
        )

    def opcua(self, site: Site) -> Child:
        return self._plant(
            f"opcua-{site.id}",
            ["opcua", "serve", "--log-level", "warning"],
            {
                "PLANT_OPCUA_HOST": "127.0.0.1",
                "PLANT_OPCUA_PORT": str(site.opcua_port),
                "PLANT_OPCUA_SITE_ID": site.id,
                "PLANT_OPCUA_SEED": str(site.seed),
                "PLANT_OPCUA_VARIATION": str(site.variation),
                "PLANT_OPCUA_SPEED": str(self.speed),
                # Loopback only: the edge connects without OPC UA security, as in compose.
                "PLANT_OPCUA_ALLOW_INSECURE": "true",
                "PLANT_OPCUA_USERS_FILE": str(self.secrets / "opcua_users.toml"),
                "PLANT_OPCUA_CERT_DIR": str(self.state / f"opcua-{site.id}" / "pki"),
            },
        )

    def edge(self, site: Site) -> Child:
        return self._plant(
            f"edge-{site.id}",
            ["bridge", "edge"],
            {
                "PLANT_EDGE_SITE_ID": site.id,
                "PLANT_EDGE_OPCUA_URL": site.opcua_url,
                "PLANT_EDGE_OPCUA_USER": "edge",
                "PLANT_EDGE_OPCUA_PASSWORD__FILE": str(self.secrets / "opcua_edge_password"),
                "PLANT_EDGE_MQTT_HOST": "127.0.0.1",
                "PLANT_EDGE_MQTT_PORT": str(self.site_port(site)),
                "PLANT_EDGE_MQTT_USERNAME": "edge",
                "PLANT_EDGE_MQTT_PASSWORD__FILE": str(self.secrets / "mqtt_edge_password"),
                "PLANT_EDGE_MQTT_CLIENT_ID": f"edge-{site.id}",
                "PLANT_EDGE_SPOOL_PATH": str(self.state / f"edge-{site.id}" / "edge.spool.sqlite"),
                "PLANT_EDGE_LOG_LEVEL": "WARNING",
            },
        )

    def controller_for(self, site: Site) -> Child:
        return self._plant(
            f"controller-{site.id}",
            ["controller", "run", "--log-level", "warning"],
            {
                "PLANT_CONTROLLER_SITE_ID": site.id,
                "PLANT_CONTROLLER_ENABLED": "true" if self.controller else "false",
                "PLANT_CONTROLLER_MQTT_HOST": "127.0.0.1",
                "PLANT_CONTROLLER_MQTT_PORT": str(self.site_port(site)),
                "PLANT_CONTROLLER_MQTT_USERNAME": "controller",
                "PLANT_CONTROLLER_MQTT_PASSWORD__FILE": str(
                    self.secrets / "mqtt_controller_password"
                ),
            },
        )

    def historians(self) -> list[Child]:
        """The historian; with --central CENTRAL_HISTORIANS on the central broker, one shared
        subscription (the historian's default group), each with its own client id, spool and
        status topic (`pcmm/v1/central-<n>/status/historian`)."""
        if not self.central:
            one = self.historian()
            return [] if one is None else [one]
        out = []
        for n in range(1, CENTRAL_HISTORIANS + 1):
            child = self.historian(f"historian-{n}")
            if child is not None:
                out.append(child)
        return out

    @staticmethod
    def historian_site(child: Child) -> str:
        """The site level of a historian's status topic (its SITE_ID; the default: central)."""
        return (child.env or {}).get("PLANT_HISTORIAN_SITE_ID", "central")

    def historian(self, name: str = "historian") -> Child | None:
        if self.influx is None:
            return None
        central = {}
        if name != "historian":
            # Its own status topic, so that each says online or offline for itself, and the
            # others' sessions to take over if one dies for good (bridge/historian/takeover.py).
            others = (f"historian-{n}" for n in range(1, CENTRAL_HISTORIANS + 1))
            central = {
                "PLANT_HISTORIAN_SITE_ID": name.replace("historian", "central"),
                "PLANT_HISTORIAN_TAKEOVER_PEERS": ",".join(
                    f"{other}@{other.replace('historian', 'central')}"
                    for other in others
                    if other != name
                ),
            }
        return self._plant(
            name,
            ["bridge", "historian"],
            {
                **central,
                "PLANT_HISTORIAN_MQTT_HOST": "127.0.0.1",
                "PLANT_HISTORIAN_MQTT_PORT": str(self.mqtt_port),
                "PLANT_HISTORIAN_MQTT_USERNAME": "historian",
                "PLANT_HISTORIAN_MQTT_PASSWORD__FILE": str(
                    self.secrets / "mqtt_historian_password"
                ),
                "PLANT_HISTORIAN_MQTT_CLIENT_ID": "historian-demo" if name == "historian" else name,
                "PLANT_HISTORIAN_INFLUX_API": self.influx.api,
                "PLANT_HISTORIAN_INFLUX_URL": self.influx.url,
                "PLANT_HISTORIAN_INFLUX_TOKEN": self.influx.token,
                "PLANT_HISTORIAN_INFLUX_ORG": self.influx.org,
                "PLANT_HISTORIAN_INFLUX_BUCKET": self.influx.bucket,
                "PLANT_HISTORIAN_SPOOL_PATH": str(self.state / name / "spool.sqlite"),
                "PLANT_HISTORIAN_LOG_LEVEL": "INFO",
            },
        )

    def fault_command(self, site: Site, plant: str) -> str:
        """The exact `plant fault` command line for a second terminal (operator's password)."""
        password = self.secret("opcua_operator_password")
        return (
            f"PLANT_FAULT_URL={site.opcua_url} PLANT_FAULT_SITE_ID={site.id} "
            f"PLANT_FAULT_USER=operator PLANT_FAULT_PASSWORD={password} "
            f"{plant} fault inject bridging --magnitude 0.8 --duration 5m --reason demo"
        )


def broker_home(state: Path, name: str = "mosquitto") -> Path:
    """A broker's folder: in the state folder, or a private temporary one for mosquitto."""
    if mosquitto_user() is None:
        return state / name
    return Path(tempfile.mkdtemp(prefix=f"pcmm-demo-{name}-"))
