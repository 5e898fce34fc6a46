"""The broker's ACL (deploy/mosquitto/acl) on a real Mosquitto: who may publish and read what.

A denied publish is still acknowledged (PUBACK) and silently dropped, so every check looks
for the absence of the message at a subscriber that would see it, after a positive control
published later has arrived.
"""

from __future__ import annotations

import time

import pytest

from core import topics
from testkit.servers import Mosquitto
from tests.support.mqtt import client, collect, connect_reason, publish_and_wait, wait_until
from tests.support.payloads import feeder_payload, site_id

pytestmark = pytest.mark.integration
SETTLE_S = 0.5  # after the positive control arrived, time for a wrongly allowed one to show


def test_anonymous_and_wrong_password_are_refused(mosquitto: Mosquitto) -> None:
    assert connect_reason(mosquitto, None) == "Not authorized"
    assert connect_reason(mosquitto, "viewer", password="wrong") == "Not authorized"
    assert connect_reason(mosquitto, "viewer") == "Success"


def test_commands_only_under_the_users_own_name(mosquitto: Mosquitto) -> None:
    t = topics.SiteTopics(site_id())
    edge_inbox = collect(mosquitto, "edge", t.all_commands)
    viewer = client(mosquitto, "viewer")
    controller = client(mosquitto, "controller")
    operator = client(mosquitto, "operator")
    publish_and_wait(viewer, t.command("setpoint", "viewer"), b"viewer")
    publish_and_wait(controller, t.command("setpoint", "operator"), b"forged")
    publish_and_wait(controller, t.command("setpoint", "controller"), b"controller")
    publish_and_wait(operator, t.command("fault", "operator"), b"operator")
    wait_until(lambda: len(edge_inbox.messages) >= 2, 10, "the allowed commands")
    time.sleep(SETTLE_S)
    assert sorted(edge_inbox.messages) == [
        (t.command("fault", "operator"), b"operator"),
        (t.command("setpoint", "controller"), b"controller"),
    ]
    for c in (viewer, controller, operator, edge_inbox.client):
        c.disconnect()


def test_ground_truth_never_reaches_controller_or_viewer(mosquitto: Mosquitto) -> None:
    site = site_id()
    t = topics.SiteTopics(site)
    controller = collect(mosquitto, "controller", f"pcmm/v1/{site}/#")
    viewer = collect(mosquitto, "viewer", f"pcmm/v1/{site}/#")
    historian = collect(mosquitto, "historian", topics.ALL_TRUTH)
    edge = client(mosquitto, "edge")
    publish_and_wait(edge, t.truth("blender"), b"truth")
    publish_and_wait(edge, t.telemetry("api_feeder"), feeder_payload(site, 0))
    wait_until(lambda: len(controller.messages) >= 1, 10, "telemetry at the controller")
    wait_until(lambda: len(viewer.messages) >= 1, 10, "telemetry at the viewer")
    wait_until(lambda: len(historian.messages) >= 1, 10, "truth at the historian")
    time.sleep(SETTLE_S)
    assert [topic for topic, _ in controller.messages] == [t.telemetry("api_feeder")]
    assert [topic for topic, _ in viewer.messages] == [t.telemetry("api_feeder")]
    assert [topic for topic, _ in historian.messages] == [t.truth("blender")]


def test_only_the_edge_publishes_telemetry(mosquitto: Mosquitto) -> None:
    site = site_id()
    topic = topics.SiteTopics(site).telemetry("api_feeder")
    watcher = collect(mosquitto, "operator", topic)
    for user in ("viewer", "controller", "historian", "operator"):
        publish_and_wait(client(mosquitto, user), topic, user.encode())
    publish_and_wait(client(mosquitto, "edge"), topic, b"edge")
    wait_until(lambda: len(watcher.messages) >= 1, 10, "the edge's telemetry")
    time.sleep(SETTLE_S)
    assert watcher.payloads() == [b"edge"]


def test_each_audit_trail_is_written_by_its_own_publisher_only(mosquitto: Mosquitto) -> None:
    t = topics.SiteTopics(site_id())
    historian = collect(mosquitto, "historian", topics.ALL_EVENTS)
    for user in ("controller", "operator", "viewer", "historian"):
        for source in ("twin", "edge"):
            publish_and_wait(client(mosquitto, user), t.audit(source), f"{user}".encode())
    for user in ("edge", "operator", "viewer", "historian"):
        publish_and_wait(client(mosquitto, user), t.audit("controller"), f"{user}".encode())
    edge = client(mosquitto, "edge")
    publish_and_wait(client(mosquitto, "controller"), t.audit("controller"), b"controller")
    publish_and_wait(edge, t.audit("twin"), b"edge: twin")
    publish_and_wait(edge, t.audit("edge"), b"edge: edge")
    wait_until(lambda: len(historian.messages) >= 3, 10, "the allowed audit records")
    time.sleep(SETTLE_S)
    assert sorted(historian.messages) == [
        (t.audit("controller"), b"controller"),
        (t.audit("edge"), b"edge: edge"),
        (t.audit("twin"), b"edge: twin"),
    ]
