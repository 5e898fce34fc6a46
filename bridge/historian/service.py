"""The historian service: MQTT ingest -> spool -> RunningOutput -> InfluxDB, and its self-metrics.

Three threads, each with one job, joined with a deadline on shutdown: the MQTT loop (paho is
blocking and single-threaded by design), the writer (influxdb-client's synchronous API), and a
ticker that writes the historian's own metrics into the spool every `metrics_period_s`, so
they reach InfluxDB even while the broker is down. Everything in the spool survives a stop.
With a share group, a fourth runs the witness (coverage.py); with takeover peers, a fifth
takes over the session of a peer that stays offline (takeover.py), one connection at a time.

A thread that ends with an exception stops the others, and `run` raises it: a full disk
(`DiskFullError`) or another spool failure as it is, anything else as `ThreadDiedError`. The
command line turns either into one line and a non-zero exit, so that the supervisor (Docker's
restart policy) restarts the historian; a process that stayed up with a dead ingest thread
would look alive and ingest nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bridge.counters import Counters
from bridge.deadletter import DeadLetterStore
from bridge.historian.coverage import Coverage
from bridge.historian.influx_api import sink_from_settings
from bridge.historian.ingest import SERVICE, MqttIngest
from bridge.historian.points import convert, metrics_line, timestamps
from bridge.historian.settings import HistorianSettings
from bridge.historian.takeover import Peer, PeerWatch, run_takeovers
from bridge.metrics import Metrics
from bridge.runner import RunningOutput
from bridge.spool import Spool, SpoolError

JOIN_TIMEOUT_S = 5.0
_log = logging.getLogger("bridge.historian")


class ThreadDiedError(RuntimeError):
    """A thread of the historian ended with an unexpected exception; the message says which."""


def self_metrics(
    settings: HistorianSettings,
    counters: Counters,
    spool: Spool,
    deadletters: DeadLetterStore,
) -> Metrics:
    """The historian's counters now, as a `pipeline` report."""
    values = {
        name: 0.0
        for name in (
            *("received", "points", "written", "retries", "invalid", "rejected"),
            *("dead_letters", "splits", "mqtt_reconnects", "lag_ms"),
        )
    }
    values.update(counters.snapshot())
    values["dropped"] = float(spool.dropped)
    values["spool_depth"] = float(spool.depth)
    values["spool_bytes"] = float(spool.size_bytes)
    values["spool_moved_aside"] = float(spool.moved_aside)
    values["deadletters_waiting"] = float(deadletters.waiting)
    values["deadletters_dropped"] = float(deadletters.dropped)
    values["deadletters_moved_aside"] = float(deadletters.moved_aside)
    return Metrics(
        service=SERVICE,
        site=settings.site_id,
        instance=settings.mqtt_client_id,
        time_ns=time.time_ns(),
        values=values,
    )


def run(settings: HistorianSettings, stop: threading.Event) -> None:
    """Run the historian until `stop` is set, or until one of its threads fails.

    Raises the failure of a thread: `SpoolError` (`DiskFullError` included) as it is, anything
    else as `ThreadDiedError`.
    """
    spool = Spool(
        settings.spool_path,
        max_items=settings.spool_max_items,
        max_bytes=settings.spool_max_bytes,
        synchronous=settings.spool_synchronous,
    )
    try:
        deadletters = DeadLetterStore(
            settings.deadletters,
            max_bytes=settings.deadletter_max_bytes,
            synchronous=settings.spool_synchronous,
        )
    except SpoolError:
        spool.close()
        raise
    counters = Counters()
    sink = sink_from_settings(settings)

    def notify() -> None:  # `output` is bound below, before any thread starts
        output.notify()

    coverage = Coverage() if settings.mqtt_share_group and settings.mqtt_witness else None
    peers = settings.peers
    watch = PeerWatch(peers, settings.takeover_grace_s) if peers else None
    ingest = MqttIngest(
        settings, spool, convert, counters, deadletters, notify, coverage=coverage, watch=watch
    )
    witness = None
    if coverage is not None:
        witness = MqttIngest(
            settings, spool, convert, counters, deadletters, notify, coverage=coverage, witness=True
        )
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
        write_on_notify=settings.flush_on_burst,
    )

    def tick() -> None:
        while not stop.wait(settings.metrics_period_s):
            report = self_metrics(settings, counters, spool, deadletters)
            spool.put_many([metrics_line(report)])

    def take_over(peer: Peer) -> bool:
        """Drain `peer`'s session through this historian's spool; True if it was ended."""
        borrowed = MqttIngest(
            settings, spool, convert, counters, deadletters, notify, takeover=peer
        )
        borrowed.run(stop)
        return borrowed.ended

    failures: list[tuple[str, BaseException]] = []

    def guarded(name: str, target: Callable[[], None]) -> threading.Thread:
        def body() -> None:
            try:
                target()
            except BaseException as error:
                if not isinstance(error, SpoolError):
                    _log.exception("thread %s died", name)
                failures.append((name, error))
                stop.set()

        return threading.Thread(target=body, name=name)

    threads = [
        guarded("mqtt-ingest", lambda: ingest.run(stop)),
        guarded("influx-writer", lambda: output.run(stop)),
        guarded("self-metrics", tick),
    ]
    if witness is not None:
        threads.append(guarded("mqtt-witness", lambda: witness.run(stop)))
    if watch is not None:
        threads.append(guarded("takeover", lambda: run_takeovers(watch, take_over, stop)))
    _log.info(
        "historian %s: %s:%d -> %s bucket %s, spool %s (%d waiting), dead letters %s",
        settings.mqtt_client_id,
        settings.mqtt_host,
        settings.mqtt_port,
        settings.influx_url,
        settings.influx_bucket,
        settings.spool_path,
        spool.depth,
        settings.deadletters,
    )
    for thread in threads:
        thread.start()
    try:
        stop.wait()
    finally:
        stop.set()
        for thread in threads:
            thread.join(JOIN_TIMEOUT_S)
        for name, close in (
            ("the MQTT client", ingest.close),
            *([("the witness's MQTT client", witness.close)] if witness is not None else []),
            ("the InfluxDB client", sink.close),
            ("the spool", spool.close),
            ("the dead-letter store", deadletters.close),
        ):
            try:
                close()
            except Exception as error:  # closing what failed must not hide why it failed
                _log.warning("closing %s failed: %s", name, error)
        _log.info("historian stopped")
    if failures:
        name, failure = failures[0]
        if isinstance(failure, SpoolError):
            raise failure
        what = f"{type(failure).__name__}: {failure}"
        raise ThreadDiedError(f"thread {name} died: {what}") from failure
