"""The compose stack's broker accounts on a real Mosquitto: one site cannot reach another.

`plant stack init` gives the edge and the controller one account per site (`edge-site1`,
`controller-site1`, ...) whose ACL lines name that site only (apps/stack.py `site_acl`), so a
site's controller can neither command nor watch another site, and a site's edge cannot
publish as another. The broker here runs the files `init` writes: the ACL, the passwd, and
deploy/mosquitto's configuration. A denied publish is acknowledged and dropped, so each check
looks for the absence of a message after a positive control published later has arrived.
"""

from __future__ import annotations

import os
import pwd
import shutil
import time
from collections.abc import Iterator

import pytest

from apps import stack
from core import topics
from testkit.servers import DEPLOY_MOSQUITTO, Mosquitto, _private_dir, free_port, need
from tests.support.mqtt import client, collect, connect_reason, publish_and_wait, wait_until

pytestmark = pytest.mark.integration
SITES = {"site1": "twin", "site2": "twin-site2"}
SETTLE_S = 0.5  # after the positive control arrived, time for a wrongly allowed one to show


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    need("mosquitto")
    folder = _private_dir("pcmm-stack-acl-", "mosquitto")
    store = folder / "store"
    users = stack.stack_mqtt_users(SITES)
    stack.init_secrets(store, {}, stack.secret_names(users))
    uid = pwd.getpwnam("mosquitto").pw_uid if os.geteuid() == 0 else os.getuid()
    stack.write_mosquitto_config(store, DEPLOY_MOSQUITTO, folder, uid, list(SITES))
    passwords = {user: stack.read_secret(store, f"mqtt_{user}_password") for user in users}
    running = Mosquitto(port=free_port(), folder=folder, passwords=passwords)
    running.write_config()
    try:
        running.start()
        yield running
    finally:
        running.kill()
        shutil.rmtree(folder, ignore_errors=True)


def test_only_site_accounts_exist(broker: Mosquitto) -> None:
    assert connect_reason(broker, "controller-site1") == "Success"
    for shared_name in ("edge", "controller"):
        assert connect_reason(broker, shared_name, password="x") == "Not authorized"


def test_a_sites_controller_commands_its_own_site_only(broker: Mosquitto) -> None:
    one, two = topics.SiteTopics("site1"), topics.SiteTopics("site2")
    inbox_one = collect(broker, "edge-site1", one.all_commands)
    inbox_two = collect(broker, "edge-site2", two.all_commands)
    controller = client(broker, "controller-site1")
    publish_and_wait(controller, two.command("setpoint", "controller-site1"), b"other site")
    publish_and_wait(controller, one.command("setpoint", "controller-site2"), b"forged name")
    publish_and_wait(controller, one.command("setpoint", "controller-site1"), b"own site")
    wait_until(lambda: len(inbox_one.messages) >= 1, 10, "the allowed command")
    time.sleep(SETTLE_S)
    assert inbox_one.messages == [(one.command("setpoint", "controller-site1"), b"own site")]
    assert inbox_two.messages == []


def test_a_sites_accounts_neither_see_nor_publish_another_site(broker: Mosquitto) -> None:
    one, two = topics.SiteTopics("site1"), topics.SiteTopics("site2")
    controller = collect(broker, "controller-site1", "pcmm/v1/#")
    operator = collect(broker, "operator", "pcmm/v1/+/api_feeder/telemetry")
    publish_and_wait(client(broker, "edge-site1"), two.telemetry("api_feeder"), b"forged")
    publish_and_wait(client(broker, "edge-site2"), two.telemetry("api_feeder"), b"site2")
    publish_and_wait(client(broker, "edge-site1"), one.telemetry("api_feeder"), b"site1")
    publish_and_wait(client(broker, "edge-site1"), one.truth("blender"), b"truth")
    wait_until(lambda: len(operator.messages) >= 2, 10, "both sites' telemetry")
    wait_until(lambda: len(controller.messages) >= 1, 10, "site1 telemetry at its controller")
    time.sleep(SETTLE_S)
    assert sorted(operator.payloads()) == [b"site1", b"site2"]
    assert controller.messages == [(one.telemetry("api_feeder"), b"site1")]


def test_a_sites_controller_writes_only_its_own_audit_trail(broker: Mosquitto) -> None:
    one, two = topics.SiteTopics("site1"), topics.SiteTopics("site2")
    historian = collect(broker, "historian", topics.ALL_EVENTS)
    controller = client(broker, "controller-site1")
    for topic in (one.audit("twin"), one.audit("edge"), two.audit("controller")):
        publish_and_wait(controller, topic, b"forged")
    publish_and_wait(client(broker, "edge-site1"), two.audit("twin"), b"forged")
    publish_and_wait(controller, one.audit("controller"), b"controller-site1")
    publish_and_wait(client(broker, "edge-site1"), one.audit("twin"), b"edge-site1")
    wait_until(lambda: len(historian.messages) >= 2, 10, "the allowed audit records")
    time.sleep(SETTLE_S)
    assert sorted(historian.messages) == [
        (one.audit("controller"), b"controller-site1"),
        (one.audit("twin"), b"edge-site1"),
    ]
