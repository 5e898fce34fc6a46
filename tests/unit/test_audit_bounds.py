"""The twin's audit trail is bounded: text cut with a marker, refusals rate-limited per user (and
summed up, never silently lost), the newest records kept with sequence numbers that keep
counting; hostile values are refused with a short reason."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from core.commands import SetpointCommand
from core.layout import load_layout
from core.tags import build_registry
from core.text import MAX_FIELD_CHARS, MAX_REASON_CHARS, clip, shown
from twin import Plant
from twin.audit import RATE_LIMIT_ACTION, AuditLog

MB = 1024 * 1024


def test_clip_keeps_short_text_and_marks_what_it_cut() -> None:
    assert clip("short") == "short"
    cut = clip("x" * 5000, 100)
    assert cut.startswith("x" * 100) and cut.endswith("[cut: 5,000 characters]")
    assert len(cut) < 140


def test_shown_never_builds_a_huge_string() -> None:
    assert shown("open") == "'open'"
    assert len(shown("y" * 10 * MB)) < 150 and "10,485,760 characters" in shown("y" * 10 * MB)
    assert "bytes" in shown(b"\x00" * 1000)
    assert shown(10**5000) == "an integer of 16,610 bits"  # str() of it would raise
    assert "items" in shown(list(range(10_000)))


def test_a_huge_integer_setpoint_is_out_of_range_not_an_overflow() -> None:
    tag = build_registry(load_layout(None).modules)["press.fill_depth_sp"]
    value, why = tag.check(10**400)  # float() of it raises OverflowError
    assert value is None and why is not None and "outside the range" in why
    assert len(why) < 200


def test_text_fields_are_cut_with_a_marker_and_an_accepted_reason_never_is() -> None:
    log = AuditLog()
    reason = "r" * MAX_REASON_CHARS
    kept = log.record(0.0, "alice", "write", "t", reason=reason, accepted=True)
    assert kept is not None and kept.reason == reason  # the longest accepted reason: whole
    record = log.record(
        1.0,
        "u" * 10_000,
        "write",
        "press.nope" * 100_000,
        old=b"\x00" * MB,
        new="v" * 10 * MB,
        reason="x" * 10 * MB,
        accepted=False,
        result="y" * MB,
    )
    assert record is not None
    for text in (record.user, record.target, record.new, record.reason, record.result):
        assert len(text) <= MAX_FIELD_CHARS + 40 and "[cut: " in text
    assert isinstance(record.old, str) and len(record.old) < MAX_FIELD_CHARS + 40


def test_refusals_are_rate_limited_per_user_and_summed_up_once_there_is_room() -> None:
    log = AuditLog(refused_burst=3, refused_every_s=10.0)
    for i in range(10):  # a flood at t = 0
        log.record(0.0, "mallory", "write", "press.fill_depth_sp", accepted=False, result=f"#{i}")
    log.record(0.0, "alice", "write", "x", accepted=False, result="alice is not held back")
    assert [r.result for r in log] == ["#0", "#1", "#2", "alice is not held back"]
    assert log.held_back == 7
    log.tick(5.0)  # half a token: still no room
    assert len(log) == 4
    log.tick(10.0)
    summary = list(log)[-1]
    assert (summary.user, summary.action, summary.new, summary.accepted) == (
        "mallory",
        RATE_LIMIT_ACTION,
        7,
        False,
    )
    assert "7 refused requests from 0 s to 0 s" in summary.result and "#9" in summary.result
    assert [r.seq for r in log] == [1, 2, 3, 4, 5]  # no gap: the summary is a record


def test_an_accepted_record_is_never_held_back_and_follows_the_summary() -> None:
    log = AuditLog(refused_burst=1, refused_every_s=100.0)
    log.record(0.0, "bob", "write", "a", accepted=False)
    log.record(1.0, "bob", "write", "a", accepted=False)  # held back
    log.record(2.0, "bob", "write", "a", new=9.0, accepted=True)
    assert [(r.action, r.accepted) for r in log] == [
        ("write", False),
        (RATE_LIMIT_ACTION, False),
        ("write", True),
    ]


def test_the_log_keeps_the_newest_records_and_numbers_keep_counting() -> None:
    log = AuditLog(max_records=5)
    for i in range(12):
        log.record(float(i), "alice", "write", "t", accepted=True, result=str(i))
    assert len(log) == 5 and (log.first_seq, log.last_seq) == (8, 12)
    assert [r.seq for r in log.since(0)] == [8, 9, 10, 11, 12]  # a jump: 1..7 are gone
    assert [r.seq for r in log.since(9)] == [10, 11, 12]
    assert [r.seq for r in log.since(9, limit=2)] == [10, 11]
    assert log.since(12) == []


@pytest.mark.parametrize("value", ["v" * 10 * MB, 10**400, b"\xff" * MB, ["open"] * 10_000])
def test_a_hostile_setpoint_value_is_refused_and_audited_as_a_bounded_record(
    warm: Callable[..., Plant], value: object
) -> None:
    plant = warm()
    result = plant.apply(SetpointCommand("diverter.position_sp", value, user="anonymous"))
    assert not result.accepted and len(result.reason) < 300
    record = list(plant.audit)[-1]
    assert (record.target, record.accepted) == ("diverter.position_sp", False)
    assert len(str(record.new)) < MAX_FIELD_CHARS + 100
    assert plant.read("diverter.position_sp") == 0


def test_the_plant_writes_the_summary_as_it_advances(warm: Callable[..., Plant]) -> None:
    plant = warm()
    before = len(plant.audit)
    for _ in range(200):
        plant.apply(SetpointCommand("press.fill_depth_sp", math.inf, user="anonymous"))
    assert len(plant.audit) == before + plant.audit.refused_burst
    plant.advance(plant.now + plant.audit.refused_every_s)
    last = list(plant.audit)[-1]
    assert last.action == RATE_LIMIT_ACTION and last.new == 200 - plant.audit.refused_burst
