"""The controller against bad input: a mode switch of any shape is a ModeError (ignored with a
log line and one audit record), and no message of any kind gets past its own handling."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pydantic import SecretStr

from controller.feed import TelemetryFeed, observed_value
from controller.messages import MAX_MODE_BYTES, ModeError, decode_mode
from controller.service import ControllerService, _Message
from controller.settings import ControllerSettings
from controller.supervisor import Supervisor
from core.payload import Event, Sample, TelemetryBatch
from core.text import MAX_REASON_CHARS
from core.topics import SiteTopics

TOPICS = SiteTopics("site1")
HOSTILE_MODES = [
    b"[" * 200_000 + b"]" * 200_000,  # nested too deeply (and larger than a switch may be)
    b"[" * 2000 + b"]" * 2000,  # nested too deeply, small enough to be parsed
    b'{"v": 1, "mode": "auto", "reason": ' + b"9" * 4000 + b"}",  # a number too long to read
    b'{"v": ' + b"1" * 4000 + b', "mode": "auto"}',
    b'{"v": 1e999, "mode": "auto"}',
    b'{"v": true, "mode": "auto"}',  # True == 1, but not the version
    b'{"v": 1.0, "mode": "auto"}',
    b"\xff\xfe\x00auto",
    b'{"v": 1, "mode": ["auto"]}',
    b'{"v": 1, "mode": {"auto": 1}}',
    b'{"v": 1, "mode": "auto", "user": 7}',
    b'{"v": 1, "mode": "auto", "reason": ["x"]}',
    json.dumps({"v": 1, "mode": "auto", "reason": "r" * (MAX_REASON_CHARS + 1)}).encode(),
    json.dumps({"v": 1, "mode": "auto", "user": "u" * 300}).encode(),
    b"auto" + b" " * MAX_MODE_BYTES,
    b"null",
    b'"auto"',
]


@pytest.mark.parametrize("payload", HOSTILE_MODES)
def test_a_hostile_mode_switch_is_a_mode_error_and_nothing_else(payload: bytes) -> None:
    with pytest.raises(ModeError) as caught:
        decode_mode(payload)
    assert len(str(caught.value)) < 200


def service() -> tuple[ControllerService, list[Event]]:
    settings = ControllerSettings(site_id="site1", mqtt_password=SecretStr("x"))
    controller = ControllerService(settings)
    published: list[Event] = []

    def publish_event(event: Event) -> None:
        published.append(event)

    # Its events are kept here instead of sent to a broker: a method replaced on purpose.
    controller._publish_event = publish_event  # type: ignore[method-assign]
    return controller, published


def test_every_hostile_mode_switch_is_ignored_and_audited_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    controller, published = service()
    topic = TOPICS.mode("controller")
    for payload in HOSTILE_MODES:
        for _ in range(3):  # the retained switch, handed over again at each reconnection
            assert controller._receive(_Message(topic, payload, None)) is None
    assert controller.feed.enabled  # still in auto
    assert controller.counters.ignored_modes == 3 * len(HOSTILE_MODES)
    assert len(published) == len(HOSTILE_MODES)  # once per distinct payload
    for event in published:
        assert (event.action, event.accepted, event.user, event.old, event.new) == (
            "mode",
            False,
            "unknown",
            "auto",
            "auto",
        )
        assert event.result.startswith("ignored: ") and len(event.result) < 300
    assert max(len(message) for message in caplog.messages) < 400
    # A good switch after them is followed.
    controller._receive(_Message(topic, b"manual", None))
    assert not controller.feed.enabled and published[-1].new == "manual"


def test_a_cleared_mode_switch_is_not_an_error() -> None:
    controller, published = service()
    controller._receive(_Message(TOPICS.mode("controller"), b"", None))
    assert published == [] and controller.counters.ignored_modes == 0


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 200_000 + b"]" * 200_000,
        b'{"v":1,"site":"site1","module":"press","sent_ns":1,"samples":[{"tag":"press.main_force",'
        b'"value":' + b"9" * 5000 + b',"quality":"good","source_ns":1,"server_ns":1,"seq":1}]}',
        b"\xff" * 100,
        b'{"v":1,"site":"site1","module":"press","sent_ns":' + b"1" * 400 + b',"samples":[]}',
    ],
)
def test_no_message_gets_past_its_own_handling(payload: bytes) -> None:
    controller, _ = service()
    for topic in (TOPICS.telemetry("press"), TOPICS.reply("controller")):
        assert controller._receive(_Message(topic, payload, b"id")) is None
    assert controller.counters.bad_payloads >= 1


def test_a_receive_that_raises_anything_is_one_bad_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    controller, _ = service()

    def boom(message: Any) -> None:
        raise OverflowError("int too large to convert to float")

    monkeypatch.setattr(controller, "_receive_one", boom)
    assert controller._receive(_Message(TOPICS.telemetry("press"), b"{}", None)) is None
    assert controller.counters.bad_payloads == 1


def test_a_value_the_supervisor_cannot_use_is_no_value() -> None:
    assert observed_value("press.main_force", 10**400) is None
    assert math.isnan(observed_value("nir.api_pct", 10**400))
    assert math.isnan(observed_value("nir.api_pct", "not a number"))
    assert observed_value("press.main_force", 12.5) == 12.5


def test_one_sample_the_supervisor_refuses_does_not_lose_its_second() -> None:
    class Picky(Supervisor):
        def observe(self, tag: str, value: Any, quality: str, source_time: float) -> None:
            if tag == "press.main_force":
                raise ValueError("no")
            super().observe(tag, value, quality, source_time)

    feed = TelemetryFeed(Picky(), stale_after_s=10)
    ns = 1_000_000_000
    batch = TelemetryBatch(
        "site1",
        "press",
        ns,
        (
            Sample("press.main_force", 1.0, "good", ns, ns, 1),
            Sample("press.turret_speed", 40.0, "good", ns, ns, 2),
        ),
    )
    feed.take([batch], 0.0)
    assert (feed.samples, feed.rejected) == (1, 1)
    assert feed.last_rejection == "press.main_force: ValueError: no"
