"""Quarantine: a press-time window flagged in genealogy (fault 13's response), through the twin's
command path: validated, audited, idempotent, and out of the accepted (released) totals."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from apps.kpi import compute
from controller import Action
from controller.messages import SentCommand, command_event, request_of
from core.commands import LineCommand, QuarantineCommand, SetpointCommand
from core.faults import FaultSpec
from core.payload import (
    COMMAND_KINDS,
    CommandReply,
    CommandRequest,
    PayloadError,
    decode_command,
    encode_command,
    window_text,
)
from core.topics import SiteTopics
from twin import Plant
from twin.ledger import Ledger, QuarantineError, TabletSlice

ROOT = Path(__file__).resolve().parents[2]


def _slice(t: float, *, oos: bool = False, diverted: bool = False) -> TabletSlice:
    return TabletSlice(
        t, "press", 10.0, 0.004, 400.0, 110.0 if oos else 100.0, 120.0, oos, diverted
    )


def test_the_ledger_moves_accepted_slices_of_the_window_once() -> None:
    ledger = Ledger()
    for t in range(1, 11):
        ledger.record(_slice(t, oos=4 <= t <= 6, diverted=t == 5))
    assert (ledger.tablets_accepted, ledger.oos_accepted_tablets) == (90.0, 20.0)

    moved = ledger.quarantine(3.0, 6.0)  # slices 3, 4, 6 (5 was diverted)
    assert moved["press"].tablets == 30.0 and moved["press"].oos_tablets == 20.0
    assert ledger.tablets_quarantined == 30.0 and ledger.oos_quarantined_tablets == 20.0
    assert ledger.mass_quarantined == pytest.approx(0.012)
    assert ledger.tablets_accepted == 60.0 and ledger.oos_accepted_tablets == 0.0
    assert ledger.oos_accepted_mass == 0.0
    assert [s.time for s in ledger.slices if s.quarantined] == [3.0, 4.0, 6.0]

    again = ledger.quarantine(2.0, 7.0)  # overlaps: only 2 and 7 are new
    assert again["press"].tablets == 20.0 and again["press"].oos_tablets == 0.0
    assert ledger.tablets_quarantined == 50.0 and ledger.tablets_accepted == 40.0
    assert ledger.quarantine(3.0, 6.0) == {}  # a repeat holds back nothing more
    assert ledger.tablets_diverted == 10.0  # diverted stays diverted


def test_a_window_beyond_the_kept_slices_is_refused_whole() -> None:
    ledger = Ledger(keep=5)
    for t in range(1, 11):
        ledger.record(_slice(t))
    assert ledger.forgotten_until == 5.0  # slices 6..10 are kept
    with pytest.raises(QuarantineError, match="after 5 s only"):
        ledger.quarantine(4.0, 8.0)
    assert ledger.tablets_quarantined == 0.0
    assert ledger.quarantine(5.5, 8.0)["press"].tablets == 30.0


def test_quarantine_through_the_plant_is_audited_and_shows_in_truth_tags(
    warm: Callable[..., Plant],
) -> None:
    plant = warm()
    plant.inject(FaultSpec("diverter_stuck", user="test"))
    plant.inject(FaultSpec("bridging", magnitude=0.9, duration_s=300, user="test"))
    plant.apply(SetpointCommand("diverter.position_sp", "reject", reason="OOS predicted"))
    plant.advance(600)
    escaped = plant.ledger.oos_accepted_tablets
    assert escaped > 0 and plant.read("diverter.true_oos_accepted") > 0
    accepted = plant.ledger.tablets_accepted

    result = plant.apply(QuarantineCommand(0.0, 600.0, user="alice", reason="gate seized"))
    assert result.accepted, result.reason
    assert result.new["start_s"] == 0.0 and result.new["end_s"] == 600.0
    held = plant.ledger.tablets_quarantined
    assert result.new["tablets"] == round(held) and held == pytest.approx(accepted)
    assert plant.ledger.oos_accepted_tablets == 0
    assert plant.ledger.oos_quarantined_tablets == pytest.approx(escaped)
    assert plant.read("diverter.true_oos_accepted") == 0
    assert plant.read("diverter.true_tablets_quarantined") == round(held)
    assert plant.read("diverter.true_oos_quarantined") == round(escaped)
    record = list(plant.audit)[-1]
    assert (record.user, record.action, record.target, record.new, record.reason) == (
        "alice",
        "quarantine",
        "genealogy",
        "0..600 s",
        "gate seized",
    )
    assert record.accepted and "tablets held back" in record.result

    # The KPIs count them as quarantined, not as (OOS) accepted.
    scores = compute(plant.ledger, plant.faults(include_ended=True), [], 600 / 3600)
    assert scores.oos_accepted == 0 and scores.quarantined == round(held)
    assert scores.oos_quarantined == round(escaped) and scores.quarantined_kg > 0

    # The same window again holds back nothing more, and is still accepted and audited.
    again = plant.apply(QuarantineCommand(300.0, 600.0, user="alice"))
    assert again.accepted and again.new["tablets"] == 0
    assert plant.ledger.tablets_quarantined == held


@pytest.mark.parametrize(
    ("start", "end", "reason"),
    [
        (100.0, 100.0, "must be after start"),
        (200.0, 100.0, "must be after start"),
        (-5.0, 100.0, "before the plant began"),
        (float("nan"), 100.0, "finite"),
        (100.0, float("inf"), "finite"),
        (0.0, 3700.0, "longer than 3600 s"),
        (100.0, 700.0, "in the future"),  # the press is making tablets
        (600.0, 610.0, "not in the past"),
    ],
)
def test_bad_windows_are_refused_with_a_reason_and_audited(
    warm: Callable[..., Plant], start: float, end: float, reason: str
) -> None:
    plant = warm()
    plant.advance(600)
    result = plant.apply(QuarantineCommand(start, end, user="mallory", reason="test"))
    assert not result.accepted and result.code == "range"
    assert reason in result.reason
    assert plant.ledger.tablets_quarantined == 0
    record = list(plant.audit)[-1]
    assert (record.action, record.user, record.accepted) == ("quarantine", "mallory", False)
    assert reason in record.result


def test_a_window_ending_in_the_future_is_cut_at_now_once_the_press_stops(
    warm: Callable[..., Plant],
) -> None:
    plant = warm()
    plant.advance(100)
    assert plant.apply(LineCommand("abort", reason="gate stuck")).accepted
    result = plant.apply(QuarantineCommand(50.0, 103.0, reason="gate stuck"))
    assert result.accepted, result.reason
    assert result.new["end_s"] == 100.0 and result.new["tablets"] > 0
    assert list(plant.audit)[-1].new == "50..100 s"


def test_a_window_older_than_the_kept_slices_is_refused(warm: Callable[..., Plant]) -> None:
    plant = warm(keep_slices=100)
    plant.advance(300)
    result = plant.apply(QuarantineCommand(100.0, 250.0))
    assert not result.accepted and "keeps tablets pressed after" in result.reason
    assert plant.apply(QuarantineCommand(250.0, 300.0)).accepted


# The command on MQTT: payload, schema, and the edge's window text ------------------------------


def test_a_quarantine_request_round_trips_and_a_bad_window_is_invalid() -> None:
    request = CommandRequest("quarantine", start_ns=10**18, end_ns=10**18 + 5 * 10**9, reason="x")
    body = json.loads(encode_command(request))
    assert body.pop("value") is None  # every request carries it (the setpoint's may be null)
    assert body == {
        "v": 1,
        "kind": "quarantine",
        "start_ns": 10**18,
        "end_ns": 10**18 + 5 * 10**9,
        "reason": "x",
    }
    assert decode_command(encode_command(request), "quarantine") == request
    for bad in (
        {"v": 1, "kind": "quarantine", "start_ns": 5, "end_ns": 5},
        {"v": 1, "kind": "quarantine", "start_ns": 5},
        {"v": 1, "kind": "quarantine", "start_ns": -1, "end_ns": 5},
        {"v": 1, "kind": "quarantine", "start_ns": 1.5, "end_ns": 5},
    ):
        with pytest.raises(PayloadError):
            decode_command(json.dumps(bad).encode(), "quarantine")
    assert SiteTopics("site1").command("quarantine", "controller") == (
        "pcmm/v1/site1/command/quarantine/controller"
    )


def test_the_command_schema_documents_every_kind_and_the_quarantine_fields() -> None:
    schema = json.loads((ROOT / "schemas" / "command.v1.json").read_text())
    assert schema["properties"]["kind"]["enum"] == list(COMMAND_KINDS)
    fields = {f.name for f in dataclasses.fields(CommandRequest)}
    assert set(schema["properties"]) == fields | {"v"}
    rules = {r["if"]["properties"]["kind"]["const"]: r["then"] for r in schema["allOf"]}
    assert rules["quarantine"]["required"] == ["start_ns", "end_ns"]


def test_a_window_reads_in_utc() -> None:
    assert window_text(0, 1_500_000_000) == "1970-01-01T00:00:00.000Z/1970-01-01T00:00:01.500Z"


# The controller's quarantine on MQTT ----------------------------------------------------------


def test_the_controller_sends_its_quarantine_as_a_quarantine_command() -> None:
    action = Action("quarantine", "genealogy", (1_700_000_000.5, 1_700_000_030.0), "gate stuck")
    request = request_of(action)
    assert request == CommandRequest(
        "quarantine",
        start_ns=1_700_000_000_500_000_000,
        end_ns=1_700_000_030_000_000_000,
        reason="gate stuck",
    )
    assert decode_command(encode_command(request), "quarantine") == request
    sent = SentCommand(request, 1_700_000_001.0, None, "controller")
    event = command_event("site1", 7, sent, CommandReply(True, "accepted", "", 1), 5.0)
    assert (event.action, event.target, event.user, event.accepted) == (
        "quarantine",
        "genealogy",
        "controller",
        True,
    )
    assert event.new == "2023-11-14T22:13:20.500Z/2023-11-14T22:13:50.000Z"
