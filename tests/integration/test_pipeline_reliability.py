"""Reliability of the whole pipeline: outages and crashes lose nothing and duplicate nothing.

One pipeline (the twin's OPC UA server in-process at 10x, `python -m bridge.edge`, Mosquitto,
`plant bridge historian`, InfluxDB 1.x), four disturbances in turn, and after each one
InfluxDB is counted against the ground truth: the server's own history of every sample it
published. Per tag, over the source times from the first stored sample to a plant time reached
after the disturbance:

- lost: a published sample that InfluxDB does not hold;
- extra: a stored point that the server never published (e.g. a wrong timestamp);
- duplicates: more than one point per series and timestamp (InfluxDB merges those by design,
  so the count is also checked through the sequence numbers the edge gives every sample).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from testkit.historian import HistorianProcess, historian_env
from testkit.loss import Tally, influx_times
from testkit.servers import InfluxDB, Mosquitto
from tests.support.mqtt import wait_until

from .conftest import RunningServer
from .edge_harness import (
    EdgeProcess,
    edge_env,
    opcua_with_edge_user,
    plant_ns,
    settle,
)

pytestmark = pytest.mark.integration


def test_outages_and_crashes_lose_and_duplicate_nothing(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    with opcua_with_edge_user(tmp_path) as running:
        historian = HistorianProcess(
            historian_env(mosquitto, influxdb, tmp_path, "historian-rel", FLUSH_INTERVAL_S=0.1),
            tmp_path / "historian.log",
        )
        edge = EdgeProcess(edge_env(running, mosquitto, tmp_path), tmp_path / "edge.log")
        historian.start()
        historian.wait_online()
        edge.start()
        try:
            _scenario(running, mosquitto, influxdb, historian, edge)
        finally:
            edge.kill()
            historian.kill()
            print(edge.text()[-3000:])
            print(historian.text()[-2000:])


def _scenario(
    running: RunningServer,
    broker: Mosquitto,
    influx: InfluxDB,
    historian: HistorianProcess,
    edge: EdgeProcess,
) -> None:
    wait_until(
        lambda: len(influx_times(influx)) >= len(running.plant.registry),
        30,
        "every tag in InfluxDB",
    )
    start = {tag: min(times) for tag, times in influx_times(influx).items()}
    results: dict[str, Tally] = {}

    def phase(name: str, disturb: Callable[[], None]) -> None:
        began = time.monotonic()
        disturb()
        time.sleep(2.0)  # let the pipeline run on after the disturbance
        end_ns = plant_ns(running, running.plant.now)
        results[name] = settle(influx, running, start, end_ns, timeout=90)
        print(f"{name}: {results[name]} ({time.monotonic() - began:.0f} s)")

    def broker_outage() -> None:
        broker.kill()  # no chance to save: what it acknowledged but had not saved is gone
        time.sleep(20)
        broker.start()

    def influx_outage() -> None:
        influx.stop()
        time.sleep(60)
        influx.start()

    def historian_crash() -> None:
        time.sleep(2)
        historian.kill()
        historian.start()

    def edge_crash() -> None:
        edge.kill()
        time.sleep(20)
        edge.start()

    phase("broker killed, 20 s down", broker_outage)
    phase("InfluxDB stopped 60 s", influx_outage)
    phase("historian SIGKILL", historian_crash)
    phase("edge SIGKILL, 20 s down", edge_crash)
    assert "backfilled" in edge.text()
    for name, result in results.items():
        assert (result.lost, result.extra, result.duplicates) == (0, 0, 0), f"{name}: {result}"
        assert result.expected > 0
    _assert_sequence_numbers_unique(influx)


def _assert_sequence_numbers_unique(influx: InfluxDB) -> None:
    """No sample was stored twice under two timestamps: each edge sequence number is unique
    per tag (a replayed sample keeps its number and its timestamp, so it merges)."""
    rows = influx.query("SELECT * FROM telemetry WHERE module = 'api_feeder'")
    seqs = [r["mass_flow_pv_seq"] for r in rows if r.get("mass_flow_pv_seq") is not None]
    assert len(seqs) == len(set(seqs))
