"""The historian as a real process (`plant bridge historian`), configured by environment."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from apps.launcher import Child
from testkit.servers import InfluxDB, Mosquitto


def plant_executable() -> str:
    exe = shutil.which("plant", path=str(Path(sys.executable).parent))
    assert exe, "the `plant` entry point is installed with the package"
    return exe


def historian_env(
    broker: Mosquitto, influx: InfluxDB, folder: Path, client_id: str, **overrides: object
) -> dict[str, str]:
    """Settings for a historian talking to the test servers, fast timings for tests."""
    settings: dict[str, object] = {
        "MQTT_HOST": broker.host,
        "MQTT_PORT": broker.port,
        "MQTT_USERNAME": "historian",
        "MQTT_PASSWORD": broker.passwords["historian"],
        "MQTT_CLIENT_ID": client_id,
        "MQTT_SESSION_EXPIRY_S": 600,
        "INFLUX_URL": influx.v2_url,
        "INFLUX_TOKEN": "test-token",
        "INFLUX_ORG": "pcmm",
        "INFLUX_BUCKET": influx.db,
        "SPOOL_PATH": folder / f"{client_id}.spool.sqlite",
        "BATCH_SIZE": 1000,
        "FLUSH_INTERVAL_S": 0.2,
        "FLUSH_JITTER_S": 0.05,
        "RETRY_INITIAL_S": 0.2,
        "RETRY_MAX_S": 2,
        "METRICS_PERIOD_S": 1,
        "SITE_ID": f"hist-{client_id}",
        "LOG_LEVEL": "INFO",
    }
    settings.update(overrides)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANT_HISTORIAN_")}
    env.update({f"PLANT_HISTORIAN_{k}": str(v) for k, v in settings.items()})
    return env


class HistorianProcess(Child):
    """`plant bridge historian` through the one launcher: start, SIGKILL, SIGTERM, restart;
    its log goes to a file. `prefix` runs it through another command (e.g. `unshare ...` for a
    disk of its own)."""

    def __init__(self, env: dict[str, str], log: Path, prefix: Sequence[str] = ()) -> None:
        argv = [*prefix, plant_executable(), "bridge", "historian"]
        super().__init__(name="historian", argv=argv, env=env, cwd=None, log=log)
