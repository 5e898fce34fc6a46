"""docker-compose.yml validates with Debian's docker-compose (offline: no engine needed).

`docker-compose config -q` catches what YAML parsing does not: bad depends_on conditions,
undefined services or volumes, wrong types. It cannot run anything (there is no Docker engine
here); tests/integration/test_compose_smoke.py runs the services' commands natively.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ONE_SHOT_ROOT = ("init", "influx-tokens", "init-central", "influx-tokens-central")
# The stack as it was before the central tier: `docker compose up` starts these, no more.
DEFAULT_SERVICES = {
    "init", "mosquitto", "influxdb", "influx-tokens", "grafana", "twin", "edge", "historian",
    "controller",
}  # fmt: skip


def _docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path:
        return path
    message = "docker-compose is not installed (apt-get install -y docker-compose)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)  # CI installs it (.ci/run): never skip there
    pytest.skip(message)


@pytest.mark.parametrize("profiles", [[], ["site2"], ["site2", "tools"], ["central"]])
def test_compose_file_is_valid(profiles: list[str], tmp_path: Path) -> None:
    args = [_docker_compose(), "-f", str(ROOT / "docker-compose.yml")]
    for profile in profiles:
        args += ["--profile", profile]
    # A clean environment: the file must work with no .env and no variables set.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    result = subprocess.run(
        [*args, "config", "-q"],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr


def test_published_ports_listen_on_loopback_only(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    result = subprocess.run(
        [
            _docker_compose(),
            "--profile",
            "site2",
            "--profile",
            "tools",
            "--profile",
            "central",
            "config",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    import yaml  # noqa: PLC0415

    config = yaml.safe_load(result.stdout)
    published = 0
    for name, service in config["services"].items():
        for port in service.get("ports", []):
            published += 1
            # docker-compose 1.29 prints "127.0.0.1:3000:3000/tcp"; compose v2 a mapping.
            host_ip = port.get("host_ip") if isinstance(port, dict) else port.split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} publishes {port}"
        if service.get("image", "").startswith("pcmm-twin") and name not in ONE_SHOT_ROOT:
            # Only the one-shot steps that write other users' secrets run as root; the
            # services keep the image's plant user.
            assert service.get("user") in (None, ""), f"{name} overrides the image's user"
    assert published >= 5


def _effective(tmp_path: Path, env_file: Path | None) -> dict[str, Any]:
    """The compose file as docker-compose resolves it, every profile, with this .env."""
    args = [_docker_compose(), "--profile", "site2", "--profile", "tools", "--profile", "central"]
    if env_file is not None:
        args += ["--env-file", str(env_file)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    result = subprocess.run(
        [*args, "config"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        check=True,
    )  # fmt: skip
    import yaml  # noqa: PLC0415

    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_the_example_env_gives_the_intended_stack(tmp_path: Path) -> None:
    """.env.example copied to .env (as its header invites) changes nothing: every value it
    sets is the compose file's default, and the edge reaches a secured twin."""
    example = _effective(tmp_path, ROOT / ".env.example")
    assert example == _effective(tmp_path, None)
    services = example["services"]
    for twin in ("twin", "twin-site2"):
        env = services[twin]["environment"]
        assert env["PLANT_OPCUA_ALLOW_INSECURE"] == "false", twin
        assert env["PLANT_OPCUA_ALLOW_ANONYMOUS"] == "false", twin
        assert "PLANT_OPCUA_PORT" not in env  # the container listens on its default, 4840
    for edge, site in (("edge", "site1"), ("edge-site2", "site2")):
        env = services[edge]["environment"]
        assert env["PLANT_EDGE_OPCUA_SECURITY"] == "Basic256Sha256_SignAndEncrypt"
        assert env["PLANT_EDGE_OPCUA_SERVER_CERT"].startswith("/run/secrets/")  # pinned
        assert env["PLANT_EDGE_MQTT_USERNAME"] == f"edge-{site}"
    assert services["controller"]["environment"]["PLANT_CONTROLLER_ENABLED"] == "true"
    assert services["controller"]["environment"]["PLANT_CONTROLLER_MQTT_USERNAME"] == (
        "controller-site1"
    )
    assert services["cli"]["environment"]["PLANT_FAULT_SERVER_CERT"].startswith("/run/secrets/")
    published = {
        name: sorted(str(p.get("published") if isinstance(p, dict) else p.split(":")[1])
                     for p in service.get("ports", []))
        for name, service in services.items()
    }  # fmt: skip
    assert published["twin"] == ["4840"] and published["twin-site2"] == ["4841"]
    assert published["grafana"] == ["3000"] and published["mosquitto"] == ["1883"]


def test_each_service_mounts_only_its_own_secrets(tmp_path: Path) -> None:
    services = _effective(tmp_path, None)["services"]
    owners: dict[str, set[str]] = {}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if str(source).startswith("secrets"):
                owners.setdefault(str(source), set()).add(name)
    assert owners.pop("secrets") == {"init", "init-central"}  # the store
    for volume, users in owners.items():
        # init writes each; influx-tokens adds Grafana's and the historian's token; else one.
        assert len(users - set(ONE_SHOT_ROOT)) == 1, (volume, users)


def _resolved(tmp_path: Path, **variables: str) -> dict[str, Any]:
    """The compose file as `docker compose up` would run it with these variables set: its
    services without a profile or with one COMPOSE_PROFILES names (docker-compose 1.29's
    `config` prints every service)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **variables}
    result = subprocess.run(
        [_docker_compose(), "config"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    import yaml  # noqa: PLC0415

    config: dict[str, Any] = yaml.safe_load(result.stdout)
    active = set(variables.get("COMPOSE_PROFILES", "").split(","))
    config["services"] = {
        name: service
        for name, service in config["services"].items()
        if not service.get("profiles") or active & set(service["profiles"])
    }
    return config


def test_without_the_central_profile_the_stack_is_as_before(tmp_path: Path) -> None:
    """No profile: the services of before, site1's broker not bridged (`init` sees no
    `central` profile), nothing of the central tier mounted or reached."""
    services = _resolved(tmp_path)["services"]
    assert set(services) == DEFAULT_SERVICES
    init = services["init"]["entrypoint"]
    assert init[init.index("--profiles") + 1] == ""
    for name, service in services.items():
        text = str(service)
        assert "central" not in text.replace("--central", ""), name


def test_the_central_profile_bridges_every_site_to_two_central_historians(
    tmp_path: Path,
) -> None:
    """COMPOSE_PROFILES=central: `init` bridges site1's broker, `init-central` writes the
    centre and site2's broker; each site's edge uses its own broker, two historians (own
    client ids, spools and status topics, the default share group) the centre."""
    services = _resolved(tmp_path, COMPOSE_PROFILES="central")["services"]
    central = {
        "init-central", "mosquitto-central", "mosquitto-site2", "influx-tokens-central",
        "historian-central-1", "historian-central-2", "twin-site2", "edge-site2-central",
    }  # fmt: skip
    assert set(services) == DEFAULT_SERVICES | central
    for one_shot in ("init", "init-central"):
        args = services[one_shot]["entrypoint"]
        assert args[args.index("--profiles") + 1] == "central", one_shot
    init = services["init"]["entrypoint"]
    assert init[init.index("--bridge") + 1] == "site1"
    assert init[init.index("--mosquitto-dir") + 1] == "/mosquitto-config"
    args = services["init-central"]["entrypoint"]
    assert args[args.index("--site-broker") + 1] == "site2=/mosquitto-site2-config"
    assert "--mosquitto-dir" not in args  # site1's broker is `init`'s alone
    mqtt = {
        name: (env.get("PLANT_EDGE_MQTT_HOST") or env.get("PLANT_HISTORIAN_MQTT_HOST"))
        for name, service in services.items()
        if (env := service.get("environment") or {})
    }
    assert mqtt["edge"] == "mosquitto" and mqtt["edge-site2-central"] == "mosquitto-site2"
    historians = [services[f"historian-central-{n}"] for n in (1, 2)]
    assert [mqtt[f"historian-central-{n}"] for n in (1, 2)] == ["mosquitto-central"] * 2
    envs = [h["environment"] for h in historians]
    assert len({e["PLANT_HISTORIAN_MQTT_CLIENT_ID"] for e in envs}) == 2
    assert len({e["PLANT_HISTORIAN_SITE_ID"] for e in envs}) == 2
    assert all("PLANT_HISTORIAN_MQTT_SHARE_GROUP" not in e for e in envs)  # the default group

    def source(volume: Any) -> str:
        return str(volume["source"] if isinstance(volume, dict) else volume.split(":")[0])

    data = [source(v) for h in historians for v in h["volumes"] if "/data" in str(v)]
    assert len(set(data)) == 2  # a spool each
    assert all(h["restart"] == "unless-stopped" for h in historians)


@pytest.mark.parametrize("profiles", ["", "site2", "central"])
def test_every_source_starts_after_the_historians_that_store_it(
    profiles: str, tmp_path: Path
) -> None:
    """The edges and the controller wait for their historians to be healthy (subscribed), as
    `plant demo` does: before a historian's first subscription there is no session for the
    broker to queue for, and it drops what a source publishes (seen: a controller started
    before the historian lost its first records)."""
    services = _resolved(tmp_path, COMPOSE_PROFILES=profiles)["services"]
    stores = {
        "edge": ["historian"],
        "controller": ["historian"],
        "edge-site2": ["historian"],
        "edge-site2-central": ["historian-central-1", "historian-central-2"],
    }
    sources = [name for name in stores if name in services]
    assert sources, profiles
    for name in sources:
        depends = services[name]["depends_on"]
        for historian in stores[name]:
            assert depends[historian]["condition"] == "service_healthy", (name, historian)
