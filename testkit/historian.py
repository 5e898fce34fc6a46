"""The historian as a real process (`plant bridge historian`), configured by environment."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from apps.health import Broker, UnhealthyError, require_online
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

    def wait_online(self, timeout_s: float = 60.0) -> None:
        """Until the historian says `online`, as `plant demo` and the compose file wait for it
        before starting a source: it says so on the connection it subscribed on, after the
        subscription, so from then on the broker routes every message to its session. What a
        source publishes before that matches no subscription, and the broker drops it."""
        env = self.env or {}

        def setting(name: str) -> str:
            return env[f"PLANT_HISTORIAN_{name}"]

        broker = Broker(
            setting("MQTT_HOST"),
            int(setting("MQTT_PORT")),
            setting("MQTT_USERNAME"),
            setting("MQTT_PASSWORD"),
            setting("SITE_ID"),
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                require_online(broker, "historian", 2.0)
                return
            except UnhealthyError as error:
                if not self.running:
                    tail = self.log.read_text()[-2000:]
                    raise AssertionError(f"the historian exited: {tail}") from None
                if time.monotonic() > deadline:
                    why = f"historian not online in {timeout_s:g} s: {error}"
                    raise AssertionError(why) from None
                time.sleep(0.2)
