"""The historian as a real process (`plant bridge historian`), configured by environment."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

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
        "SITE": f"hist-{client_id}",
        "LOG_LEVEL": "INFO",
    }
    settings.update(overrides)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANT_HISTORIAN_")}
    env.update({f"PLANT_HISTORIAN_{k}": str(v) for k, v in settings.items()})
    return env


class HistorianProcess:
    """Start, SIGKILL, SIGTERM and restart `plant bridge historian`; its log goes to a file.

    `prefix` runs it through another command (e.g. `unshare ...` for a disk of its own).
    """

    def __init__(self, env: dict[str, str], log: Path, prefix: Sequence[str] = ()) -> None:
        self.env = env
        self.log = log
        self.prefix = list(prefix)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*self.prefix, plant_executable(), "bridge", "historian"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self) -> int:
        assert self.proc is not None
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
