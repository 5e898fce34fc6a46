"""The audit trail's hash chain: made by the twin, the edge and the controller the same way,
carried unchanged through OPC UA, the edge and the historian, and checked by `verify_chain`."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bridge.edge.events import to_event
from bridge.historian.points import convert, route
from core import topics
from core.audit_chain import (
    GENESIS,
    AuditChain,
    ChainBreakError,
    StoredRecord,
    as_text,
    event_hash,
    record_hash,
    verify_chain,
)
from core.payload import Event, PayloadError, decode_event, encode_event
from core.timebase import to_ns
from opcua_server.audit_events import record_fields
from twin.audit import AuditLog

T = topics.SiteTopics("site1")
NS = 1_700_000_000_000_000_000
START = datetime(2026, 1, 1, tzinfo=UTC)


def stored(event: Event) -> StoredRecord:
    """What the historian keeps of an audit event (old and new as text)."""
    return StoredRecord(
        log=event.log,
        seq=event.seq,
        time_ns=event.time_ns,
        prev_hash=event.prev_hash,
        hash=event.hash,
        user=event.user,
        action=event.action,
        target=event.target,
        old=as_text(event.old),
        new=as_text(event.new),
        reason=event.reason,
        accepted=event.accepted,
        result=event.result,
    )


def chain_of(n: int, log: str = "run1", first_seq: int = 1) -> list[Event]:
    chain = AuditChain(log)
    return [
        chain.seal(
            Event(
                "site1",
                "audit",
                first_seq + i,
                NS + i,
                "controller",
                user="controller",
                action="write",
                target="api_feeder.mass_flow_sp",
                old=2.0,
                new=2.0 + i / 10,
                reason="trim",
                accepted=i % 2 == 0,
                result="accepted",
            )
        )
        for i in range(n)
    ]


def test_the_twins_records_are_chained_across_the_memory_cap() -> None:
    log = AuditLog(max_records=3)
    for i in range(5):
        log.record(float(i), "alice", "write", "press.fill_depth_sp", old=9, new=10 + i,
                   reason="why", accepted=True, result="ok")  # fmt: skip
    kept = list(log)
    assert [r.seq for r in kept] == [3, 4, 5]
    for before, after in itertools.pairwise(kept):
        assert after.prev_hash == before.hash
    last = kept[-1]
    assert last.hash == record_hash(
        last.prev_hash, seq=5, time_ns=4_000_000_000, user="alice", action="write",
        target="press.fill_depth_sp", old=9, new=14, reason="why", accepted=True, result="ok",
    )  # fmt: skip
    first = AuditLog()
    first.record(0.0, "bob", "start", "line", accepted=False)
    assert next(iter(first)).prev_hash == GENESIS


def test_records_made_before_the_server_binds_its_clock_are_chained_with_its_times() -> None:
    log = AuditLog(max_records=2)
    for i in range(3):
        log.record(float(i), "alice", "start", "line", accepted=True)
    log.bind_stamp(lambda plant_s: to_ns(START + timedelta(seconds=plant_s)))
    kept = list(log)
    assert [r.seq for r in kept] == [2, 3] and log.last_seq == 3
    assert kept[0].time_ns == to_ns(START + timedelta(seconds=1))
    assert kept[1].prev_hash == kept[0].hash
    for record in kept:
        fields = record_fields(record, START + timedelta(seconds=record.time), "log1")
        event = to_event("site1", "audit", fields, 0)
        assert event.time_ns == record.time_ns and event_hash(event, event.prev_hash) == record.hash
    log.record(3.0, "bob", "stop", "line", accepted=True)
    assert list(log)[-1].prev_hash == kept[1].hash and list(log)[-1].seq == 4


@pytest.mark.parametrize("value", [None, True, 7, 2**40, 9.5, 1e-7, "RUNNING", "", float("nan")])
def test_a_twin_record_keeps_its_hash_through_opcua_the_edge_and_the_historian(
    value: object,
) -> None:
    log = AuditLog()
    log.stamp = lambda plant_s: to_ns(START + timedelta(seconds=plant_s))
    log.record(1.25, "alice via edge", "write", "press.fill_depth_sp", old=value, new=value,
               reason='a "quoted"\nreason ü', accepted=False, result="range")  # fmt: skip
    log.record(2.5, "bob", "start", "line", accepted=True, result="ok")
    events = []
    for record in log:
        fields = record_fields(record, START + timedelta(seconds=record.time), "log1")
        events.append(to_event("site1", "audit", fields, 0))
    assert [e.log for e in events] == ["log1", "log1"]
    assert events[0].hash == next(iter(log)).hash
    for event in events:
        assert event_hash(event, event.prev_hash) == event.hash
        nan = isinstance(value, float) and math.isnan(value)  # NaN != NaN: its text compares
        assert nan or decode_event(encode_event(event)) == event
        convert(T.audit("twin"), encode_event(event))  # the historian takes it
    assert verify_chain([stored(e) for e in events]) == (2, 1)


def test_an_intact_trail_of_two_logs_verifies() -> None:
    records = [stored(e) for e in chain_of(4) + chain_of(3, "run2", first_seq=900)]
    assert verify_chain(records[::-1]) == (7, 2)


def test_an_edited_record_is_the_first_break() -> None:
    records = [stored(e) for e in chain_of(5)]
    records[2] = replace(records[2], result="accepted, approved by QA")
    with pytest.raises(ChainBreakError, match="seq 3: its fields do not give its hash") as error:
        verify_chain(records)
    assert (error.value.log, error.value.seq) == ("run1", 3)


def test_a_deleted_record_is_a_missing_seq() -> None:
    records = [stored(e) for e in chain_of(5)]
    del records[1]
    with pytest.raises(ChainBreakError, match=r"seq 2 missing \(seq 1 is followed by 3\)"):
        verify_chain(records)


def test_a_deleted_first_record_breaks_the_start_of_its_log() -> None:
    with pytest.raises(ChainBreakError, match="seq 2: the log's first stored record"):
        verify_chain([stored(e) for e in chain_of(3)][1:])


def test_a_record_stored_twice_and_a_rechained_one_are_breaks() -> None:
    records = [stored(e) for e in chain_of(3)]
    forged = stored(chain_of(2)[1])  # same seq, same chain start, other content
    forged = replace(forged, result="forged")
    forged = replace(forged, hash=forged.computed_hash())
    with pytest.raises(ChainBreakError, match="seq 2: stored twice"):
        verify_chain([*records, forged])
    # A record whose hash was recomputed after an edit: its successor no longer follows it.
    with pytest.raises(ChainBreakError, match="seq 3: its prev_hash is not the hash of seq 2"):
        verify_chain([records[0], forged, records[2]])


# The historian: identity from the topic and the hash ------------------------------------------


def test_an_audit_records_site_and_source_come_from_its_topic_and_its_hash_is_its_identity() -> (
    None
):
    (event,) = chain_of(1)
    (line,) = convert(T.audit("controller"), encode_event(event))
    head = line.split(b" ", 1)[0]
    assert head == (
        f"events,hash={event.hash},kind=audit,log=run1,site=site1,source=controller".encode()
    )
    assert f'prev_hash="{GENESIS}"'.encode() in line and b"seq=1i" in line
    assert line.endswith(str(NS).encode())
    assert route(T.audit("twin")).source == "twin"
    # A replay is the same point; another record with the same seq and time is another series.
    assert convert(T.audit("controller"), encode_event(event)) == [line]
    other = AuditChain("run1").seal(replace(event, result="approved by QA", hash="", prev_hash=""))
    (other_line,) = convert(T.audit("controller"), encode_event(other))
    assert other_line.split(b" ", 1)[0] != head


@pytest.mark.parametrize(
    ("topic", "change", "reason"),
    [
        ("twin", {}, "audit record of 'controller' on the topic of twin"),
        ("controller", {"site": "site2"}, "event of site2/audit on the topic of site1"),
        ("controller", {"result": "approved by QA"}, "its hash does not match its fields"),
        ("controller", {"seq": 7}, "its hash does not match its fields"),
        ("controller", {"hash": "", "prev_hash": ""}, "without its hash chain"),
        ("controller", {"log": "a b"}, "not an identifier"),
    ],
)
def test_the_historian_refuses_an_audit_record_that_is_not_its_topics_or_not_its_hashs(
    topic: str, change: dict[str, object], reason: str
) -> None:
    (event,) = chain_of(1)
    with pytest.raises(PayloadError, match=reason):
        convert(T.audit(topic), encode_event(replace(event, **change)))  # type: ignore[arg-type]


def test_audit_records_have_a_topic_per_source_only() -> None:
    (event,) = chain_of(1)
    for topic in (f"{T.base}/events/audit", f"{T.base}/events/audit/operator"):
        with pytest.raises(PayloadError, match="not a historian topic"):
            convert(topic, encode_event(event))
    with pytest.raises(PayloadError, match="event of site1/audit on the topic of site1/alarm"):
        convert(T.event("alarm"), encode_event(event))
    with pytest.raises(ValueError, match="audit"):
        T.event("audit")
    with pytest.raises(ValueError, match="unknown audit source"):
        T.audit("operator")
    assert T.audit("edge") == "pcmm/v1/site1/events/audit/edge"
