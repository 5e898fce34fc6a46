"""Wait until the historian has stored everything the broker holds for it: a marker behind it.

When the demo stops, the sources (edges, controllers) stop first. What they published is then
in the broker's queue for the historian's session, in the historian's spool, or in InfluxDB.
The demo publishes one self-metrics report of its own (as the broker's `historian` user, on
`pcmm/v1/demo/metrics/historian`, instance `drain-<random>`) after the sources are gone: the
broker queues it behind everything they sent, the historian spools and writes in order, so
once the marker is in InfluxDB (measurement `pipeline`), so is everything before it. A
condition, not a pause: the demo waits for it, bounded.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

from apps.demo.services import Demo, DemoError
from bridge.historian.influxql import InfluxQueryError, query_rows
from bridge.metrics import Metrics, encode_metrics
from bridge.mqtt_session import MqttConfig, make_client
from core import topics

MARKER_SITE = "demo"


def drain_historian(demo: Demo, timeout_s: float = 60.0) -> float:
    """Publish the marker and wait until InfluxDB holds it; the seconds it took."""
    influx = demo.influx
    if influx is None:
        raise DemoError("no InfluxDB to drain into")
    began = time.monotonic()
    marker = f"drain-{uuid.uuid4().hex[:12]}"
    report = Metrics("historian", MARKER_SITE, marker, time.time_ns(), {"drain": 1.0})
    login = MqttConfig("127.0.0.1", demo.mqtt_port, "historian", demo.mqtt_password("historian"))
    client = make_client(replace(login, client_id=marker))
    try:
        client.connect("127.0.0.1", demo.mqtt_port, keepalive=15)
        client.loop_start()
        info = client.publish(
            topics.SiteTopics(MARKER_SITE).metrics("historian"), encode_metrics(report), qos=1
        )
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            raise DemoError("the broker did not take the historian's drain marker")
    except (OSError, ValueError, RuntimeError) as error:
        raise DemoError(f"cannot publish the drain marker: {error}") from None
    finally:
        client.disconnect()
        client.loop_stop()
    db = influx.bucket.split("/", 1)[0]
    q = f'SELECT "drain" FROM "pipeline" WHERE "instance" = \'{marker}\''
    deadline = began + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            if query_rows(influx.url, db, q, token=influx.token, timeout_s=5):
                return time.monotonic() - began
        except InfluxQueryError as error:
            last = f" ({error})"
        time.sleep(0.2)
    raise DemoError(f"the historian did not store what it was sent within {timeout_s:g} s{last}")
