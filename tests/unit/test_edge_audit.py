"""The edge's audit trail logic: dedupe by seq, paging, parked live records, a new log, its mark.

The server is a fake answering `AuditSince` calls as the real one does (pages of at most
`page` records, the last seq, the log id), so every path runs without sockets.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua

from bridge.edge.audit import MAX_ABOVE, AuditMark, AuditTrail, parse_record

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(seq: int) -> dict[str, Any]:
    return {
        "AuditSeq": seq,
        "User": "alice",
        "Action": "write",
        "Target": "press.fill_depth_sp",
        "OldValue": "9.0",
        "NewValue": json.dumps(9.0 + seq / 1000),
        "Reason": f"r{seq}",
        "Accepted": True,
        "Result": "",
        "Severity": 100,
        "Message": "m",
        "Time": T0 + timedelta(seconds=seq, microseconds=7),
    }


class FakeServer:
    """Answers AuditSince from a list of records; `during_call` runs inside each call."""

    def __init__(self, n: int, log_id: str = "log-a", page: int = 3) -> None:
        self.records = [record(seq) for seq in range(1, n + 1)]
        self.log_id = log_id
        self.page = page
        self.calls: list[int] = []
        self.status = ua.StatusCodes.Good
        self.during_call: Any = None
        self.uaclient = self

    async def call(self, requests: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
        (request,) = requests
        after = request.InputArguments[0].Value
        self.calls.append(after)
        if self.during_call is not None:
            self.during_call(after)
        if self.status != ua.StatusCodes.Good:
            return [ua.CallMethodResult(StatusCode=ua.StatusCode(self.status))]
        after_it = [r for r in self.records if r["AuditSeq"] > after]
        page = after_it[: min(self.page, request.InputArguments[1].Value)]
        texts = [json.dumps({**r, "Time": r["Time"].isoformat()}) for r in page]
        last_seq = self.records[-1]["AuditSeq"] if self.records else 0
        outputs = [
            ua.Variant(texts, ua.VariantType.String, is_array=True),
            ua.Variant(last_seq, ua.VariantType.UInt64),
            ua.Variant(self.log_id, ua.VariantType.String),
        ]
        return [ua.CallMethodResult(OutputArguments=outputs)]


class Sink:
    def __init__(self) -> None:
        self.forwarded: list[int] = []
        self.batches = 0

    async def __call__(self, records: list[dict[str, Any]]) -> None:
        self.forwarded.extend(int(r["AuditSeq"]) for r in records)
        self.batches += 1


def backfill(trail: AuditTrail, server: FakeServer) -> int:
    return asyncio.run(trail.backfill(server, 2, "site1"))


def test_mark_takes_each_seq_once_and_keeps_the_contiguous_high() -> None:
    mark = AuditMark("x")
    assert [mark.take(s) for s in (1, 2, 2, 5, 4, 1)] == [True, True, False, True, True, False]
    assert (mark.high, mark.above) == (2, {4, 5})
    assert mark.take(3) and (mark.high, mark.above) == (5, set())
    mark.take(8)
    assert mark.accept_gaps() == 2 and (mark.high, mark.above) == (8, set())
    assert AuditMark.from_json(mark.to_json()) == mark


def test_parse_record_gives_the_events_fields_and_time() -> None:
    fields = parse_record(json.dumps({**record(3), "Time": record(3)["Time"].isoformat()}))
    assert fields == record(3)


def test_backfill_pages_everything_in_order_then_only_what_is_new(tmp_path: Path) -> None:
    sink = Sink()
    trail = AuditTrail(tmp_path / "audit.json", sink)
    server = FakeServer(8)
    assert backfill(trail, server) == 8
    assert sink.forwarded == list(range(1, 9))
    assert server.calls == [0, 3, 6]  # paged after the last seq of each page
    server.records += [record(9), record(10)]
    trail.connecting()
    assert backfill(trail, server) == 2
    assert sink.forwarded == list(range(1, 11)) and server.calls[-1] == 8


def test_live_records_during_a_backfill_are_parked_then_forwarded_once_in_order(
    tmp_path: Path,
) -> None:
    sink = Sink()
    trail = AuditTrail(tmp_path / "audit.json", sink)
    server = FakeServer(5)
    trail.connecting()
    queued: list[int] = []

    def live(seq: int) -> None:
        queued.extend(r["AuditSeq"] for r in trail.live(record(seq)))

    # The subscription delivers 4, 6 and 5 (made while the backfill runs) before the first page.
    def deliver(after: int) -> None:
        if after == 0:
            for seq in (4, 6, 5):
                live(seq)

    server.during_call = deliver
    assert backfill(trail, server) == 5
    assert queued == []  # parked, not forwarded on the live path
    assert sink.forwarded == [1, 2, 3, 4, 5, 6]
    # After the backfill, live records go straight through, each once.
    for seq in (6, 7, 7):
        live(seq)
    assert queued == [7]


def test_a_new_audit_log_on_the_server_starts_again_from_seq_1(tmp_path: Path) -> None:
    sink = Sink()
    path = tmp_path / "audit.json"
    trail = AuditTrail(path, sink)
    backfill(trail, FakeServer(6, "old"))
    change = trail.changes()
    assert change is not None
    trail.write(change)
    assert trail.changes() is None

    restarted = AuditTrail(path, sink)
    assert (restarted.mark.log_id, restarted.mark.high) == ("old", 6)
    server = FakeServer(4, "new")
    restarted.connecting()
    assert backfill(restarted, server) == 4
    assert server.calls == [6, 0, 3]  # asked after 6, saw a new log, read it from the start
    assert sink.forwarded == [1, 2, 3, 4, 5, 6, 1, 2, 3, 4]
    assert restarted.mark == AuditMark("new", 4)


def test_a_server_without_the_method_leaves_live_records_flowing(tmp_path: Path) -> None:
    sink = Sink()
    trail = AuditTrail(tmp_path / "audit.json", sink)
    server = FakeServer(3)
    server.status = ua.StatusCodes.BadMethodInvalid
    trail.connecting()
    server.during_call = lambda after: trail.live(record(3))
    assert backfill(trail, server) == 0
    assert sink.forwarded == [3]  # the parked record, released; 1 and 2 given up
    assert trail.mark == AuditMark("", 3)
    assert trail.live(record(4)) == [record(4)]


def test_a_lost_connection_drops_the_parked_records_for_the_next_backfill(
    tmp_path: Path,
) -> None:
    sink = Sink()
    trail = AuditTrail(tmp_path / "audit.json", sink)
    server = FakeServer(3)
    trail.connecting()

    def cut(after: int) -> None:
        trail.live(record(3))
        raise ConnectionError("lost")

    server.during_call = cut
    with pytest.raises(ConnectionError):
        backfill(trail, server)
    assert sink.forwarded == [] and trail.mark.high == 0
    server.during_call = None
    trail.connecting()
    assert backfill(trail, server) == 3 and sink.forwarded == [1, 2, 3]


def test_an_unreadable_mark_starts_from_the_first_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.json"
    path.write_text("{not json")
    assert AuditTrail(path, Sink()).mark == AuditMark()


def test_records_the_server_no_longer_keeps_are_given_up_and_the_rest_forwarded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = Sink()
    trail = AuditTrail(tmp_path / "audit.json", sink)
    server = FakeServer(4)
    assert backfill(trail, server) == 4
    # The edge is away while 20 records are made; the server keeps only its newest 8.
    server.records = [record(seq) for seq in range(17, 25)]
    trail.connecting()
    assert backfill(trail, server) == 8
    assert sink.forwarded == [1, 2, 3, 4, *range(17, 25)]
    assert trail.mark == AuditMark("log-a", 24)  # no set of seqs above a gap left behind
    assert "12 audit records after seq 4 are no longer kept by the server" in caplog.text


def test_a_mark_gives_up_a_gap_rather_than_grow_without_bound() -> None:
    mark = AuditMark("x")
    mark.take(1)
    for seq in range(3, MAX_ABOVE + 4):  # 2 never arrives
        assert mark.take(seq)
    assert len(mark.above) <= MAX_ABOVE
    assert mark.take(MAX_ABOVE + 10) and not mark.take(2)
