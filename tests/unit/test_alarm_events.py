"""An alarm transition from the server's condition event to the historian's point."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.edge.events import to_event
from bridge.historian.points import convert
from core.payload import PayloadError, decode_event, encode_event
from core.topics import SiteTopics

FIELDS = {
    "AlarmSeq": 7,
    "ConditionName": "nir.api_pct",
    "Transition": "acknowledge",
    "ClientUserId": "alice via edge",
    "Comment": "on it",
    "Message": "nir.api_pct acknowledge by alice via edge: on it",
    "Severity": 700,
    "Level": "HighHigh",
    "State": "active_acked",
    "Elapsed": 42.5,
    "Time": datetime(2026, 1, 1, tzinfo=UTC),
}


def test_a_condition_event_becomes_an_alarm_event_with_priority_state_and_time_to_ack() -> None:
    event = to_event("site1", "alarm", dict(FIELDS), 0)
    assert (event.seq, event.action, event.target, event.user, event.reason) == (
        7,
        "acknowledge",
        "nir.api_pct",
        "alice via edge",
        "on it",
    )
    assert (event.priority, event.level, event.state, event.elapsed_s) == (
        700,
        "HighHigh",
        "active_acked",
        42.5,
    )
    assert decode_event(encode_event(event)) == event


def test_the_historian_stores_the_alarm_as_a_tag_and_its_measures_as_fields() -> None:
    event = to_event("site1", "alarm", dict(FIELDS), 0)
    [line] = convert(SiteTopics("site1").event("alarm"), encode_event(event))
    text = line.decode()
    assert text.startswith("events,alarm=nir.api_pct,kind=alarm,site=site1,")
    assert ",priority=700i," in text and 'state="active_acked"' in text
    assert "elapsed_s=42.5" in text


def test_an_unknown_state_is_refused() -> None:
    event = to_event("site1", "alarm", {**FIELDS, "State": "active_acked"}, 0)
    payload = encode_event(event).replace(b"active_acked", b"asleep")
    with pytest.raises(PayloadError):
        decode_event(payload)
