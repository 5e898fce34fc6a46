"""The compose stack's central tier from what `plant stack init` writes, on real brokers.

`init` and `init-central` run as the compose file gives them (their entry points, the volumes
as folders here, COMPOSE_PROFILES=central as the stack is started with it), with the central
broker's address pointed at a local port. Three Mosquittos then run from the folders they
wrote: site1's (`mosquitto`, bridged by `init`), site2's (`mosquitto-site2`) and the centre
(`mosquitto-central`); `init-central` wrote the tier's services their secrets. A site's
telemetry published at its own broker reaches the historian at the centre; the centre has no
edge or controller account; without the profile `init` writes today's broker config and
`init-central` refuses in one line.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from apps import stack
from core import topics
from testkit.servers import DEPLOY_MOSQUITTO, Mosquitto, _private_dir, free_port, need
from tests.support.mqtt import client, collect, connect_reason, publish_and_wait, wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SERVICES: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
PROFILES = "${COMPOSE_PROFILES:-}"


def run_init(
    service: str, root: Path, profiles: str, central_port: int
) -> subprocess.CompletedProcess[str]:
    """`service`'s entry point as compose gives it, each container path a folder under `root`
    (deploy/mosquitto itself for its bind mount)."""

    def local(path: str) -> Path:
        return DEPLOY_MOSQUITTO if path == "/deploy/mosquitto" else root / path.lstrip("/")

    for volume in SERVICES[service]["volumes"]:
        local(volume.split(":")[1]).mkdir(parents=True, exist_ok=True)
    args = []
    for given in SERVICES[service]["entrypoint"][1:]:
        arg = given.replace(PROFILES, profiles)
        if arg.startswith("/"):
            arg = str(local(arg))
        elif "=/" in arg:
            key, _, path = arg.partition("=")
            arg = f"{key}={local(path)}"
        args.append(arg)
    args += ["--central-address", f"127.0.0.1:{central_port}"]
    if os.geteuid() == 0:
        args += ["--mosquitto-uid", str(pwd.getpwnam("mosquitto").pw_uid)]
    return subprocess.run(
        [sys.executable, "-m", "apps.cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def broker(folder: Path, port: int, passwords: dict[str, str]) -> Mosquitto:
    running = Mosquitto(port=port, folder=folder, passwords=passwords)
    running.write_config(running.conf)  # the conf `init` wrote, on a loopback port
    if os.geteuid() == 0:
        uid = pwd.getpwnam("mosquitto").pw_uid
        for path in (folder, *folder.iterdir()):
            os.chown(path, uid, -1)
    return running


@pytest.fixture
def root() -> Iterator[Path]:
    need("mosquitto")
    folder = _private_dir("pcmm-stack-central-", "mosquitto")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_init_writes_a_central_tier_that_carries_both_sites_to_the_centre(root: Path) -> None:
    central_port = free_port()
    for service in ("init", "init-central"):
        done = run_init(service, root, "central", central_port)
        assert done.returncode == 0, done.stderr
    store = root / "secrets"
    wanted = stack.consumers(stack.STACK_SITES)
    for name in stack.central_consumers(stack.STACK_SITES):  # init-central's to write
        folder = root / "run" / "stack" / name
        files = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
        assert files == set(wanted[name].files), name

    def password(user: str) -> str:
        return stack.read_secret(store, f"mqtt_{user}_password")

    centre = broker(
        root / "mosquitto-central-config",
        central_port,
        {user: password(user) for user in ("historian", "operator", "edge-site1")},
    )
    site1 = broker(root / "mosquitto-config", free_port(), {"edge-site1": password("edge-site1")})
    site2 = broker(
        root / "mosquitto-site2-config", free_port(), {"edge-site2": password("edge-site2")}
    )
    started = []
    try:
        for server in (centre, site1, site2):
            server.start()
            started.append(server)
        # The centre: the stack's historian, operator and viewer, the bridges; no site account.
        assert connect_reason(centre, "edge-site1") == "Not authorized"
        inbox = collect(centre, "historian", "pcmm/v1/+/+/telemetry")
        status = collect(centre, "operator", "pcmm/v1/+/status/bridge")
        wait_until(
            lambda: (
                {t for t, p in status.messages if p == b"1"}
                >= {topics.SiteTopics(s).status("bridge") for s in ("site1", "site2")}
            ),
            30,
            f"both bridges up at the centre: {status.messages}",
        )
        one, two = topics.SiteTopics("site1"), topics.SiteTopics("site2")
        publish_and_wait(client(site1, "edge-site1"), one.telemetry("press"), b"site1")
        publish_and_wait(client(site2, "edge-site2"), two.telemetry("press"), b"site2")
        wait_until(lambda: len(inbox.messages) >= 2, 30, f"both sites at the centre: {inbox}")
        assert sorted(inbox.messages) == [
            (one.telemetry("press"), b"site1"),
            (two.telemetry("press"), b"site2"),
        ]
    finally:
        for server in started:
            server.kill()


def test_without_the_profile_init_writes_todays_broker_and_init_central_refuses(
    root: Path,
) -> None:
    done = run_init("init", root, "", free_port())
    assert done.returncode == 0, done.stderr
    conf = (root / "mosquitto-config" / "mosquitto.conf").read_text()
    assert conf == (DEPLOY_MOSQUITTO / "mosquitto.conf").read_text()  # no bridge
    refused = run_init("init-central", root, "site2", free_port())
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0, refused.stderr
    assert "COMPOSE_PROFILES=central" in refused.stderr
    assert not any((root / "mosquitto-central-config").iterdir())
