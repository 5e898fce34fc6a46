"""Wait until the historian has stored everything the broker holds for it: a marker behind it.

When the demo stops, the sources (edges, controllers) stop first. What they published is then
in the broker's queue for the historian's session, in the historian's spool, or in InfluxDB.
The demo publishes one self-metrics report of its own (as the broker's `historian` user, on
`pcmm/v1/demo/metrics/historian`, instance `drain-<random>`) after the sources are gone: the
broker queues it behind everything they sent, the historian spools and writes in order, so
once the marker is in InfluxDB (measurement `pipeline`), so is everything before it. A
condition, not a pause: the demo waits for it, bounded.

The central tier (--central) takes two steps. First a marker per site, published on the
site's own broker (`pcmm/v1/<site>/metrics/historian`, which the bridge forwards): the bridge
forwards in order, so once it is stored everything of that site has reached the centre. Then
markers on the central broker, two per historian: Mosquitto hands a shared subscription's
messages to its members in turn (bridge/historian/README.md), and each member receives and
stores its own in order, so once every marker is stored each historian has stored a marker
that came after all of the sites' data. (Nothing else is published on the metrics topics by
then: the sources are stopped and the historians put their own reports straight into their
spools; a second marker each covers one that slipped in between.)
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
MARKERS_PER_HISTORIAN = 2  # the central tier's second step


def drain_historian(demo: Demo, timeout_s: float = 60.0) -> float:
    """Publish the marker(s) and wait until InfluxDB holds them; the seconds it took."""
    if demo.influx is None:
        raise DemoError("no InfluxDB to drain into")
    began = time.monotonic()
    deadline = began + timeout_s
    if demo.central:
        # Step one: every site's data is at the centre.
        site_markers = [m for s in demo.sites for m in _publish(demo, demo.site_port(s), s.id)]
        _wait_stored(demo, site_markers, deadline, timeout_s)
    count = MARKERS_PER_HISTORIAN * len(demo.historians()) if demo.central else 1
    _wait_stored(demo, _publish(demo, demo.mqtt_port, MARKER_SITE, count), deadline, timeout_s)
    return time.monotonic() - began


def _publish(demo: Demo, port: int, site: str, count: int = 1) -> list[str]:
    """`count` markers, back to back, on `site`'s historian metrics topic of the broker on
    `port`; their instance names."""
    markers = [f"drain-{uuid.uuid4().hex[:12]}" for _ in range(count)]
    login = MqttConfig("127.0.0.1", port, "historian", demo.mqtt_password("historian"))
    client = make_client(replace(login, client_id=markers[0]))
    try:
        client.connect("127.0.0.1", port, keepalive=15)
        client.loop_start()
        sent = []
        for marker in markers:
            report = Metrics("historian", site, marker, time.time_ns(), {"drain": 1.0})
            topic = topics.SiteTopics(site).metrics("historian")
            sent.append(client.publish(topic, encode_metrics(report), qos=1))
        for info in sent:
            info.wait_for_publish(timeout=10)
            if not info.is_published():
                raise DemoError("the broker did not take the historian's drain marker")
    except (OSError, ValueError, RuntimeError) as error:
        raise DemoError(f"cannot publish the drain marker: {error}") from None
    finally:
        client.disconnect()
        client.loop_stop()
    return markers


def _wait_stored(demo: Demo, markers: list[str], deadline: float, timeout_s: float) -> None:
    influx = demo.influx
    assert influx is not None
    db = influx.bucket.split("/", 1)[0]
    wanted = " OR ".join(f"\"instance\" = '{marker}'" for marker in markers)
    q = f'SELECT count("drain") FROM "pipeline" WHERE {wanted} GROUP BY "instance"'
    last = ""
    while time.monotonic() < deadline:
        try:
            if len(query_rows(influx.url, db, q, token=influx.token, timeout_s=5)) == len(markers):
                return
        except InfluxQueryError as error:
            last = f" ({error})"
        time.sleep(0.2)
    raise DemoError(f"the historian did not store what it was sent within {timeout_s:g} s{last}")
