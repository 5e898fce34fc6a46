"""The one backoff, the one MQTT settings vocabulary, and the session helper's client."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import certifi
import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from bridge.edge.settings import EdgeSettings
from bridge.historian.settings import HistorianSettings
from bridge.mqtt_session import MqttConfig, MqttSession, make_client
from controller.settings import ControllerSettings
from core.backoff import Backoff, half_jitter

MQTT_KEYS = {
    "site_id",
    "mqtt_host",
    "mqtt_port",
    "mqtt_username",
    "mqtt_password",
    "mqtt_client_id",
    "mqtt_tls",
    "mqtt_tls_ca",
    "mqtt_keepalive_s",
    "retry_initial_s",
    "retry_max_s",
}


def test_the_backoff_doubles_up_to_its_cap_and_starts_again_after_a_success() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.upcoming == 0.5 and backoff.next() == 0.5


def test_half_jitter_draws_between_half_and_all_of_the_delay() -> None:
    assert half_jitter(4.0, lambda low, high: low) == 2.0
    assert half_jitter(4.0, lambda low, high: high) == 4.0


@pytest.mark.parametrize("settings", [EdgeSettings, HistorianSettings, ControllerSettings])
def test_every_service_names_its_mqtt_settings_alike(settings: type[BaseSettings]) -> None:
    assert set(settings.model_fields) >= MQTT_KEYS


def test_the_controllers_client_id_defaults_to_its_site() -> None:
    assert ControllerSettings(site_id="site7").mqtt_client_id == "pcmm-controller-site7"
    assert ControllerSettings(mqtt_client_id="mine").mqtt_client_id == "mine"


def test_a_login_is_read_from_any_services_settings() -> None:
    login = MqttConfig.of(EdgeSettings(mqtt_password=SecretStr("pw"), mqtt_tls_ca=Path("/ca.pem")))
    assert (login.username, login.password, login.client_id) == ("edge", "pw", "edge-site1")
    assert login.tls_ca == Path("/ca.pem") and login.where == "localhost:1883"


@pytest.mark.parametrize(
    ("tls", "ca", "verified"), [(False, False, False), (True, False, True), (False, True, True)]
)
def test_tls_is_on_when_asked_for_or_a_ca_is_named(tls: bool, ca: bool, verified: bool) -> None:
    ca_file = Path(certifi.where()) if ca else None
    client = make_client(MqttConfig("localhost", 1883, "u", tls=tls, tls_ca=ca_file))
    context = client._ssl_context
    assert (context is not None) == verified
    if context is not None:
        assert context.verify_mode == ssl.CERT_REQUIRED


def test_a_session_that_never_connected_closes_quietly() -> None:
    session = MqttSession(
        MqttConfig("127.0.0.1", 9, "u"),
        log=logging.getLogger("test"),
        status_topic="pcmm/v1/x/status/test",
    )
    assert not session.connected
    session.close()
