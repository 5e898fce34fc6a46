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

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path:
        return path
    message = "docker-compose is not installed (apt-get install -y docker-compose)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)  # CI installs it (.ci/run): never skip there
    pytest.skip(message)


@pytest.mark.parametrize("profiles", [[], ["site2"], ["site2", "tools"]])
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
        [_docker_compose(), "--profile", "site2", "--profile", "tools", "config"],
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
        if service.get("image", "").startswith("pcmm-twin") and name != "init":
            # Only the one-shot init runs as root; the services keep the image's plant user.
            assert service.get("user") in (None, ""), f"{name} overrides the image's user"
    assert published >= 5
