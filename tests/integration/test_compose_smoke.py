"""docker-compose.yml, run for real: each plant service's own command with its own environment.

There is no Docker engine on this machine, and `docker-compose config` cannot tell a wrong
command, module path or variable name from a right one. So this test reads docker-compose.yml
and the Dockerfile's ENTRYPOINT and runs every plant service, twice:

- `image`: inside the image built from the real Dockerfile (scripts/build-image, as CI does),
  with `buildah run --isolation chroot --network host`, as the image's non-root user (the
  one-shot `init` as the user compose gives it, root), each compose volume a folder of this
  test bind-mounted at the container path compose gives it, read-only where compose says so;
- `native`: the same commands as local processes of this checkout, container paths rewritten
  to the folders (quick to run on a machine without buildah).

In both: the `init` service (the secret store, each service's own secrets folder, the broker's
per-site ACL and passwd, the OPC UA users file and certificates); Mosquitto from the folder
`init` wrote, and InfluxDB 1.6.7 (tests/support) standing in for InfluxDB 2 (the historian
writes through the test-only v2 write proxy); twin, edge, historian and controller, and the
site2 profile's twin-site2 and edge-site2, each with the compose environment (interpolated
with the file's defaults), where a value that names a compose service and its container port
is rewritten to 127.0.0.1 and the local port. It waits for every service's own healthcheck
command (`plant health ...`) and the broker's to pass, for telemetry of both sites, ground
truth and pipeline metrics to reach InfluxDB, and for a fault injected as the README shows
(`docker compose run --rm cli plant fault inject`, over SignAndEncrypt with the twin's
certificate pinned) to come back as an event.

Deviations from a container, all forced by what this machine has: the published ports are
free local ports; the broker's passwd and ACL are owned by this machine's mosquitto user;
InfluxDB 2's bucket-scoped tokens (the `influx-tokens` step) cannot be made by InfluxDB 1.6.7,
so the historian's write token is a random one the proxy is told to require.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from apps.launcher import Child, stop_all
from apps.servers import give_to_mosquitto
from apps.stack import (
    PLANT_UID,
    STACK_SITES,
    central_consumers,
    consumers,
    secret_names,
    stack_mqtt_users,
)
from testkit.servers import InfluxDB, Mosquitto, _private_dir, free_port, need
from tests.support.image import Image, built_image

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
ENTRYPOINT: list[str] = json.loads(
    re.search(r"^ENTRYPOINT (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M).group(1)  # type: ignore[union-attr]
)
PLANT = ["twin", "edge", "historian", "controller", "twin-site2", "edge-site2"]
# How a plant service learns the port it listens on (its container port is published).
LISTEN_VARIABLE = {("twin", 4840): "PLANT_OPCUA_PORT", ("twin-site2", 4840): "PLANT_OPCUA_PORT"}
# From .env: a faster plant, so data arrives sooner.
DOT_ENV = {"PLANT_STACK_SPEED": "5.0"}
HEALTH_TIMEOUT_S = 120.0


def interpolate(value: Any, env: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default}, ${NAME-default} and $$."""

    def one(match: re.Match[str]) -> str:
        name, colon, default = match.group(1), match.group(2), match.group(3)
        if name in env and (env[name] or not colon):
            return env[name]
        return default or ""

    text = str(value).replace("$$", "\0")
    text = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)-([^}]*))?\}", one, text)
    return text.replace("\0", "$")


@dataclass
class Stack:
    """The stand-ins for the compose services and their volumes, natively or in the image."""

    root: Path
    image: Image | None = None  # None: native processes of this checkout
    endpoints: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    procs: dict[str, Child] = field(default_factory=dict)

    def volume(self, name: str) -> Path:
        path = self.root / "volumes" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def mounts(self, service: str) -> list[tuple[str, Path, bool]]:
        """(container path, local path, read-only) of the service's volumes, longest first."""
        out = []
        for spec in SERVICES[service].get("volumes", []):
            source, target, *options = spec.split(":")
            local = ROOT / source if source.startswith(".") else self.volume(source)
            out.append((target, local, "ro" in options))
        return sorted(out, key=lambda m: -len(m[0]))

    def rewrite(self, service: str, text: str) -> str:
        """`service:port` -> 127.0.0.1:local port; natively, container paths -> folders."""
        if self.image is None:
            for target, local, _ in self.mounts(service):
                if text == target or text.startswith(target + "/"):
                    return str(local) + text[len(target) :]
            if any(target.startswith(text + "/") for target, _, _ in self.mounts(service)):
                return str(self.parent_of_mounts(service, text))

        def endpoint(match: re.Match[str]) -> str:
            key = (match.group(2), int(match.group(3)))
            if key not in self.endpoints:
                return match.group(0)
            host, port = self.endpoints[key]
            return f"{match.group(1)}{host}:{port}"

        return re.sub(r"(^|//)([a-z][a-z0-9-]*):(\d+)", endpoint, text)

    def environment(self, service: str) -> dict[str, str]:
        raw = {k: interpolate(v, DOT_ENV) for k, v in SERVICES[service]["environment"].items()}
        env = {k: self.rewrite(service, v) for k, v in raw.items()}
        for key, value in raw.items():
            # A host name (not a user that happens to share a service's name).
            if value in SERVICES and key.endswith(("_HOST", "_HOSTNAME")):
                # The OPC UA host name stays: it is in the twin's certificate, made by init.
                if not key.endswith("_HOSTNAME"):
                    env[key] = "127.0.0.1"
                port_key = key.removesuffix("HOST") + "PORT"
                if key.endswith("HOST") and port_key in raw:
                    env[port_key] = str(self.endpoints[(value, int(raw[port_key]))][1])
        for (name, port), variable in LISTEN_VARIABLE.items():
            if name == service:
                env[variable] = str(self.endpoints[(service, port)][1])
        if self.image is not None:
            return env  # the image's own PATH and HOME
        bin_dir = str(Path(sys.executable).parent)
        return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(self.root), **env}

    def parent_of_mounts(self, service: str, path: str) -> Path:
        """Natively, a folder whose entries are the service's volumes mounted below `path`."""
        folder = self.root / "parents" / service / path.strip("/").replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        for target, local, _ in self.mounts(service):
            if target.startswith(path + "/") and "/" not in target[len(path) + 1 :]:
                link = folder / target[len(path) + 1 :]
                if not link.exists():
                    link.symlink_to(local)
        return folder

    def command(self, service: str, args: list[str], user: str | None = None) -> list[str]:
        """The argv that runs `args` as the service: natively, or inside the image."""
        argv = [self.rewrite(service, interpolate(a, DOT_ENV)) for a in args]
        if self.image is None:
            return argv
        mounts = [(local, target, ro) for target, local, ro in self.mounts(service)]
        return self.image.run_argv(argv, self.environment(service), mounts, user=user)

    def workdir(self, service: str) -> Path:
        # The image's WORKDIR is /data, each service's own volume (or a scratch folder).
        local = {target: path for target, path, _ in self.mounts(service)}
        return local.get("/data") or self.volume(f"{service}-work")

    def popen_env(self, service: str) -> dict[str, str] | None:
        return self.environment(service) if self.image is None else None

    def start(self, service: str) -> None:
        argv = self.command(service, [*ENTRYPOINT, *SERVICES[service]["command"]])
        self.procs[service] = Child(
            name=service, argv=argv, log=self.root / f"{service}.log",
            env=self.popen_env(service), cwd=self.workdir(service),
        )  # fmt: skip
        self.procs[service].start()

    def run(
        self, service: str, args: list[str], timeout: float = 60, user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`docker compose run --rm <service> <args>` (an entry point included in `args`)."""
        return subprocess.run(
            self.command(service, args, user), env=self.popen_env(service),
            cwd=self.workdir(service), capture_output=True, text=True, timeout=timeout,
            check=False,
        )  # fmt: skip

    def healthcheck(self, service: str) -> subprocess.CompletedProcess[str]:
        test = SERVICES[service]["healthcheck"]["test"]
        assert test[0] == "CMD", f"{service}: a plant healthcheck is an exec form command"
        return self.run(service, test[1:], timeout=60)

    def log(self, service: str) -> str:
        path = self.root / f"{service}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        stop_all(list(self.procs.values()), 10)


def wait(check: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(what(), pytrace=False)
        time.sleep(0.5)


def start_broker(stack: Stack) -> Mosquitto:
    """Mosquitto from the folder `init` wrote (conf from deploy/, per-site ACL, passwd)."""
    folder = stack.volume("mosquitto-config")
    data = stack.volume("mosquitto-data")
    broker = Mosquitto(port=free_port(), folder=folder)
    broker.write_config(broker.conf, data)  # the conf `init` copied from deploy/
    give_to_mosquitto(folder, data, broker.conf)
    broker.start()
    stack.endpoints[("mosquitto", 1883)] = ("127.0.0.1", broker.port)
    return broker


@pytest.fixture(params=["native", "image"])
def stack(request: pytest.FixtureRequest, influxdb: InfluxDB) -> Iterator[Stack]:
    need("mosquitto")
    need("mosquitto_sub")
    image = built_image() if request.param == "image" else None
    root = _private_dir("pcmm-stack-", "mosquitto")
    stack = Stack(root, image)
    broker: Mosquitto | None = None
    try:
        if image is not None:
            # Docker copies the image's /data (owned by `plant`) into a new volume.
            for name in ("twin-data", "twin-site2-data", "edge-data", "edge-site2-data",
                         "historian-data"):  # fmt: skip
                os.chown(stack.volume(name), PLANT_UID, -1)
        for target, local, _ in stack.mounts("init"):
            if target.startswith("/run/stack/"):
                local.mkdir(exist_ok=True)  # compose creates every volume init mounts
        # init: its entry point and arguments as compose gives them, as the user it gives.
        args = [*SERVICES["init"]["entrypoint"]]
        if os.geteuid() == 0:
            args += ["--mosquitto-uid", str(pwd.getpwnam("mosquitto").pw_uid)]
        result = stack.run("init", args, user=SERVICES["init"]["user"])
        assert result.returncode == 0, result.stderr
        report(f"init ({request.param}): {' '.join(result.stderr.split())}")
        # influx-tokens (InfluxDB 2 only): the historian's token, required by the proxy.
        token = secrets.token_urlsafe(24)
        token_file = stack.volume("secrets-historian") / "influxdb_write_token"
        token_file.write_text(token)
        token_file.chmod(0o400)
        if os.geteuid() == 0:
            os.chown(token_file, PLANT_UID, -1)
        assert influxdb.proxy is not None
        influxdb.proxy.token = token
        broker = start_broker(stack)
        proxy = influxdb.proxy.url.removeprefix("http://").split(":")
        stack.endpoints[("influxdb", 8086)] = (proxy[0], int(proxy[1]))
        for name in ("twin", "twin-site2"):
            stack.endpoints[(name, 4840)] = ("127.0.0.1", free_port())
        yield stack
    finally:
        stack.stop()
        if broker is not None:
            broker.kill()
        if influxdb.proxy is not None:
            influxdb.proxy.token = None
        shutil.rmtree(root, ignore_errors=True)


def test_compose_services_become_healthy_and_data_flows(stack: Stack, influxdb: InfluxDB) -> None:
    store = stack.volume("secrets")
    assert set(secret_names(stack_mqtt_users(STACK_SITES))) <= {p.name for p in store.iterdir()}
    # Each service's volume holds its own secrets only, owned by its user, 0400.
    for name, consumer in consumers(STACK_SITES).items():
        folder = stack.volume(f"secrets-{name}")
        files = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
        extra = {"grafana": {"influxdb_read_token"}, "historian": {"influxdb_write_token"}}
        if name == "controller-site2":
            assert files == set(), "compose runs no controller for site2"
            continue
        if name in central_consumers(STACK_SITES):
            assert files == set(), f"{name}: init-central's (the central profile), not init's"
            continue
        assert files - extra.get(name, set()) == set(consumer.files), name
        for path in folder.rglob("*"):
            if path.is_file() and os.geteuid() == 0:
                assert (path.stat().st_uid, path.stat().st_mode & 0o777) == (consumer.uid, 0o400)
    broker_files = stack.volume("mosquitto-config")
    for name in ("passwd", "acl"):
        assert (broker_files / name).stat().st_mode & 0o777 == 0o600, name
    # The broker's own healthcheck: the viewer logs in with its generated password.
    probe = SERVICES["mosquitto"]["healthcheck"]["test"][1]
    port = stack.endpoints[("mosquitto", 1883)][1]
    probe = probe.replace("$$", "$").replace("/run/secrets", str(stack.volume("secrets-mosquitto")))
    probe = probe.replace("-p 1883", f"-p {port}")
    done = subprocess.run(
        ["sh", "-c", probe], capture_output=True, text=True, timeout=20, check=False
    )
    assert done.returncode == 0, done.stderr

    started = time.monotonic()
    for service in PLANT:
        stack.start(service)
    for service in PLANT:

        def healthy(service: str = service) -> bool:
            child = stack.procs[service]
            if not child.running:
                assert child.proc is not None
                pytest.fail(f"{service} exited {child.proc.returncode}:\n{stack.log(service)}")
            return stack.healthcheck(service).returncode == 0

        wait(
            healthy,
            HEALTH_TIMEOUT_S,
            lambda s=service: f"{s} not healthy: {stack.healthcheck(s).stderr}\n{stack.log(s)}",  # type: ignore[misc]
        )
        check = stack.healthcheck(service)
        report(f"{service}: {check.stderr.strip()} ({time.monotonic() - started:.1f} s)")

    def count(query: str) -> int:
        rows = influxdb.query(query)
        return int(rows[0]["count"]) if rows else 0

    for site in ("site1", "site2"):
        wait(
            lambda site=site: (
                count(  # type: ignore[misc]
                    f"SELECT count(\"tablet_weight\") FROM telemetry WHERE site = '{site}'"
                )
                > 0
            ),
            60,
            lambda site=site: (  # type: ignore[misc]
                f"no telemetry of {site}; measurements {influxdb.query('SHOW MEASUREMENTS')}\n"
                f"edge:\n{stack.log('edge')}\ntwin:\n{stack.log('twin')}"
            ),
        )
    wait(
        lambda: count('SELECT count("true_api_content") FROM truth') > 0,
        30,
        lambda: "no ground truth stored",
    )

    def reporting() -> set[str]:
        rows = influxdb.query('SHOW TAG VALUES FROM "pipeline" WITH KEY = "service"')
        return {row["value"] for row in rows}

    wait(
        lambda: reporting() >= {"edge", "historian"},
        60,
        lambda: f"self-metrics only from {reporting()}",
    )

    # The README's fault injection: docker compose run --rm cli plant fault inject ...
    injected = stack.run(
        "cli", [*ENTRYPOINT, "plant", "fault", "inject", "bridging", "--magnitude", "0.8",
                "--duration", "60", "--reason", "compose smoke test"],
    )  # fmt: skip
    assert injected.returncode == 0, injected.stderr
    report(f"cli: plant fault inject: {' '.join((injected.stdout + injected.stderr).split())}")
    wait(
        lambda: bool(
            influxdb.query('SELECT "user", "action" FROM events WHERE "action" = \'inject_fault\'')
        ),
        60,
        lambda: f"the fault never reached InfluxDB:\n{stack.log('edge')}",
    )
    for service in PLANT:
        assert stack.procs[service].running, f"{service} died:\n{stack.log(service)}"
    report(f"healthy, both sites stored, fault event stored: {time.monotonic() - started:.1f} s")


def report(line: str) -> None:
    """What CI's log shows of this test (pytest -s): each step's own words."""
    print(f"[compose smoke] {line}", flush=True)
