"""Real servers for the integration tests: Mosquitto and InfluxDB 1.x on free loopback ports.

Registered as a pytest plugin in tests/conftest.py. No mocks: each fixture starts the Debian
binary with a configuration generated in a temporary folder, waits until it accepts
connections, can stop and restart it on the same port mid-test (outage tests), and kills it at
teardown. The broker is the demo's starter (apps/servers.py: deploy/mosquitto's configuration
and ACL, so the tests check the files that are deployed) with accounts of its own here; influxd
is configured as the demo configures its own (apps/demo/services.py's `LocalInflux`); both run
through the one launcher, apps/launcher.py.

A missing binary skips the test on a developer machine, and FAILS it when CI=true or
PLANT_REQUIRE_SERVERS=1: in CI the integration tests must run, never silently skip.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from apps.demo.services import DemoError, LocalInflux, influx_query, wait_for_influx
from apps.launcher import Child, free_port
from apps.servers import (
    DEPLOY_MOSQUITTO,
    ROOT,
    CentralLink,
    Mosquitto,
    Server,
    central_acl,
    give_to_mosquitto,
    mosquitto_user,
)
from testkit.influx_v2_proxy import InfluxV2Proxy

# The tests and benchmarks take every server and helper from here, the shared ones included.
__all__ = [
    "DEPLOY_MOSQUITTO",
    "ROOT",
    "InfluxDB",
    "Mosquitto",
    "free_port",
    "make_central_tier",
    "make_influxdb",
    "make_mosquitto",
    "need",
    "running_influxdb",
    "running_mosquitto",
    "servers_required",
]
USERS = ("edge", "historian", "controller", "operator", "viewer")
START_TIMEOUT_S = 15.0
ADMIN = "admin"  # InfluxDB's all-privileges user when a test turns authentication on


def servers_required() -> bool:
    """True in CI (or when asked): a missing server is a failure, not a skip."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get(
        "PLANT_REQUIRE_SERVERS"
    ) in ("1", "true")


def need(
    binary: str, install: str = "apt-get install -y mosquitto mosquitto-clients influxdb"
) -> str:
    """The path of a server binary, or skip (developer machine) / fail (CI) the test."""
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin")
    if path:
        return path
    message = f"{binary} is not installed ({install})"
    if servers_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _private_dir(prefix: str, owner: str | None) -> Path:
    """A temporary folder a privilege-dropping server can use (pytest's tmp_path is 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if owner and os.geteuid() == 0:
        entry = pwd.getpwnam(owner)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


# --- Mosquitto ----------------------------------------------------------------------------


def make_mosquitto(
    *,
    port: int | None = None,
    central: CentralLink | None = None,
    bridges: Sequence[CentralLink] = (),
) -> Mosquitto:
    """A broker (not started) with an account per user of USERS, random passwords.

    `central`: a site broker, bridged to that central broker. `bridges`: the central broker
    of those sites' links (an account and an ACL section per site).
    """
    binary = need("mosquitto")
    passwd_tool = need("mosquitto_passwd")
    folder = _private_dir("pcmm-mosquitto-", "mosquitto")
    passwords = {user: secrets.token_urlsafe(12) for user in USERS}
    passwords |= {link.username: link.password for link in bridges}
    passwd = folder / "passwd"
    for i, (user, password) in enumerate(passwords.items()):
        args = [passwd_tool, "-b", *(["-c"] if i == 0 else []), str(passwd), user, password]
        subprocess.run(args, check=True, capture_output=True)
    (folder / "acl").write_text(central_acl(list(bridges)))
    broker = Mosquitto(
        port=port or free_port(), folder=folder, passwords=passwords, binary=Path(binary)
    )
    broker.write_config(central=central)
    if mosquitto_user() is not None:
        # Started as root, mosquitto drops to the `mosquitto` user before reading these.
        give_to_mosquitto(*folder.iterdir())
        for path in folder.iterdir():
            path.chmod(0o640)
    return broker


def make_central_tier(sites: Sequence[str]) -> tuple[Mosquitto, dict[str, Mosquitto]]:
    """A central broker and one site broker per site bridged to it (none started)."""
    central_port = free_port()
    links = [
        CentralLink(site, "127.0.0.1", central_port, secrets.token_urlsafe(12)) for site in sites
    ]
    central = make_mosquitto(port=central_port, bridges=links)
    return central, {link.site: make_mosquitto(central=link) for link in links}


@contextmanager
def running_mosquitto(broker: Mosquitto | None = None) -> Iterator[Mosquitto]:
    """`broker` (default: make_mosquitto's) running; killed and its folder removed afterwards."""
    broker = broker or make_mosquitto()
    try:
        broker.start()
        yield broker
    finally:
        broker.kill()
        shutil.rmtree(broker.folder, ignore_errors=True)


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A running broker; `.stop()` / `.start()` make an outage; killed at teardown."""
    with running_mosquitto() as broker:
        yield broker


# --- InfluxDB 1.x -------------------------------------------------------------------------


@dataclass
class InfluxDB(Server):
    """influxd 1.x on 127.0.0.1:`port`, database `db`, and a test-only v2 write proxy.

    Configured and started as `plant demo` starts its own (apps/demo/services.py's
    `LocalInflux` and `Child`): one way to start the server. With `auth`, authentication is on
    and `admin` is the all-privileges user.
    """

    local: LocalInflux
    child: Child | None = None
    proxy: InfluxV2Proxy | None = None
    starts: int = 0
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.local.port

    @property
    def folder(self) -> Path:
        return self.local.folder

    @property
    def db(self) -> str:
        return self.local.db

    @property
    def url(self) -> str:
        """The 1.x HTTP API (write with /write, query with /query)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def v2_url(self) -> str:
        """The proxy that speaks /api/v2/write, for influxdb-client."""
        assert self.proxy is not None
        return self.proxy.url

    @property
    def log(self) -> Path:
        return self.folder / "influxd.log"

    def start(self) -> None:
        """Start (or restart) on the same port and data folder: the demo's own launcher."""
        if self.running:
            return
        self.child = self.local.child(Path(need("influxd")), dict(os.environ), self.log)
        self.child.start()
        self.starts += 1
        try:
            wait_for_influx(self.child, self.url, START_TIMEOUT_S)
            if self.local.auth:  # the first user may be made without credentials
                influx_query(
                    self.url,
                    f"CREATE USER {ADMIN} WITH PASSWORD '{self.admin_password}' "
                    "WITH ALL PRIVILEGES",
                )
            influx_query(self.url, f'CREATE DATABASE "{self.db}"', auth=self.admin)
        except DemoError as error:
            raise RuntimeError(str(error)) from None

    @property
    def admin(self) -> tuple[str, str] | None:
        return (ADMIN, self.admin_password) if self.local.auth else None

    def _credentials(self) -> dict[str, str]:
        return {"u": ADMIN, "p": self.admin_password} if self.local.auth else {}

    def query(self, q: str, *, post: bool = False) -> list[dict[str, Any]]:
        """Run InfluxQL; return the rows of all series as dicts (time in ns, tags included)."""
        rows: list[dict[str, Any]] = []
        for result in self._results(q, f"in {q}", post=post):
            for series in result.get("series", []):
                tags = series.get("tags", {})
                for values in series["values"]:
                    rows.append({**tags, **dict(zip(series["columns"], values, strict=True))})
        return rows

    def statements(self, statements: list[str]) -> list[list[list[Any]]]:
        """Run several InfluxQL statements in one request; per statement, its rows (time first)."""
        results = self._results(";".join(statements), f"in {len(statements)} statements")
        return [[row for s in r.get("series", []) for row in s["values"]] for r in results]

    def _results(self, q: str, where: str, *, post: bool = False) -> list[dict[str, Any]]:
        """The answer's results, one per statement; an InfluxQL error raises RuntimeError."""
        query = {"db": self.db, "q": q, "epoch": "ns"}
        params = urllib.parse.urlencode({**query, **self._credentials()})
        request = urllib.request.Request(
            f"{self.url}/query?{params}", method="POST" if post else "GET"
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            body = json.load(reply)
        results: list[dict[str, Any]] = body.get("results", [])
        for result in results:
            if "error" in result:
                raise RuntimeError(f"InfluxQL error: {result['error']} {where}")
        return results

    def write(self, lines: str) -> None:
        """Write line protocol directly (ns), bypassing the proxy."""
        params = urllib.parse.urlencode({"db": self.db, "precision": "n", **self._credentials()})
        request = urllib.request.Request(
            f"{self.url}/write?{params}", data=lines.encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10):
            pass


def make_influxdb(*, auth: bool = False) -> InfluxDB:
    need("influxd")
    folder = _private_dir("pcmm-influxdb-", None)
    local = LocalInflux(folder, port=free_port(), rpc_port=free_port(), auth=auth)
    local.write_config()
    return InfluxDB(local)


@contextmanager
def running_influxdb(*, auth: bool = False) -> Iterator[InfluxDB]:
    """A running influxd 1.x with database `pcmm`, and its v2 write proxy (`.v2_url`)."""
    server = make_influxdb(auth=auth)
    try:
        server.start()
        server.proxy = InfluxV2Proxy(server.url)
        server.proxy.start()
        yield server
    finally:
        if server.proxy is not None:
            server.proxy.stop()
        server.kill()
        shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture
def influxdb() -> Iterator[InfluxDB]:
    """A running influxd 1.x with database `pcmm`, and its v2 write proxy (`.v2_url`)."""
    with running_influxdb() as server:
        yield server
