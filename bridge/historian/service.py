"""The historian service: MQTT ingest -> spool -> RunningOutput -> InfluxDB, and its self-metrics.

Three threads, each with one job, joined with a deadline on shutdown: the MQTT loop (paho is
blocking and single-threaded by design), the writer (influxdb-client's synchronous API), and a
ticker that writes the historian's own metrics into the spool every `metrics_period_s`, so
they reach InfluxDB even while the broker is down. Everything in the spool survives a stop.
"""

from __future__ import annotations

import logging
import threading
import time

from bridge.counters import Counters
from bridge.historian.influx import InfluxSink
from bridge.historian.ingest import SERVICE, MqttIngest
from bridge.historian.points import convert, metrics_line, timestamps
from bridge.historian.settings import HistorianSettings
from bridge.metrics import Metrics
from bridge.runner import RunningOutput
from bridge.spool import Spool

JOIN_TIMEOUT_S = 5.0
_log = logging.getLogger("bridge.historian")


def self_metrics(settings: HistorianSettings, counters: Counters, spool: Spool) -> Metrics:
    """The historian's counters now, as a `pipeline` report."""
    values = {
        name: 0.0
        for name in (
            *("received", "points", "written", "retries", "invalid", "rejected"),
            *("dead_letters", "mqtt_reconnects", "lag_ms"),
        )
    }
    values.update(counters.snapshot())
    values["dropped"] = float(spool.dropped)
    values["spool_depth"] = float(spool.depth)
    values["spool_bytes"] = float(spool.size_bytes)
    return Metrics(SERVICE, settings.site, settings.mqtt_client_id, time.time_ns(), values)


def run(settings: HistorianSettings, stop: threading.Event) -> None:
    """Run the historian until `stop` is set."""
    spool = Spool(
        settings.spool_path,
        max_items=settings.spool_max_items,
        max_bytes=settings.spool_max_bytes,
        synchronous=settings.spool_synchronous,
    )
    counters = Counters()
    sink = InfluxSink.from_settings(settings)
    # `output` is bound below, before any thread starts and so before the first call.
    ingest = MqttIngest(settings, spool, convert, counters, lambda: output.notify())  # noqa: PLW0108
    output = RunningOutput(
        spool,
        sink,
        ingest.deadletter_batch,
        batch_size=settings.batch_size,
        flush_interval_s=settings.flush_interval_s,
        flush_jitter_s=settings.flush_jitter_s,
        retry_initial_s=settings.retry_initial_s,
        retry_max_s=settings.retry_max_s,
        counters=counters,
        timestamp=lambda line: timestamps([line])[0],
        name="historian.influx",
    )

    def tick() -> None:
        while not stop.wait(settings.metrics_period_s):
            report = self_metrics(settings, counters, spool)
            spool.put_many([metrics_line(report)])

    threads = [
        threading.Thread(target=ingest.run, args=(stop,), name="mqtt-ingest"),
        threading.Thread(target=output.run, args=(stop,), name="influx-writer"),
        threading.Thread(target=tick, name="self-metrics"),
    ]
    _log.info(
        "historian %s: %s:%d -> %s bucket %s, spool %s (%d waiting)",
        settings.mqtt_client_id,
        settings.mqtt_host,
        settings.mqtt_port,
        settings.influx_url,
        settings.influx_bucket,
        settings.spool_path,
        spool.depth,
    )
    for thread in threads:
        thread.start()
    try:
        stop.wait()
    finally:
        stop.set()
        for thread in threads:
            thread.join(JOIN_TIMEOUT_S)
        ingest.close()
        sink.close()
        spool.close()
        _log.info("historian stopped")
