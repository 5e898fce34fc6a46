"""bridge.runner: when RunningOutput writes (a full batch at once, a partial one when due), and
how it finds the bad items of a rejected batch."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from bridge.counters import Counters
from bridge.runner import RunningOutput
from bridge.sink import RejectedError
from bridge.spool import DiskFullError, Spool


class RecordingSink:
    """Keeps every batch with the monotonic time it was written."""

    def __init__(self) -> None:
        self.writes: list[tuple[float, list[bytes]]] = []
        self.written = threading.Event()

    def write(self, lines: Sequence[bytes]) -> None:
        self.writes.append((time.monotonic(), list(lines)))
        self.written.set()

    def close(self) -> None:
        pass


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(tmp_path / "s.db", synchronous="NORMAL") as s:
        yield s


def start(output: RunningOutput) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=output.run, args=(stop,), daemon=True)
    thread.start()
    return thread, stop


def test_a_partial_batch_waits_the_interval_from_its_arrival(spool: Spool) -> None:
    sink = RecordingSink()
    output = RunningOutput(
        spool, sink, lambda lines, why: None, batch_size=100, flush_interval_s=0.3
    )
    thread, stop = start(output)
    try:
        time.sleep(0.45)  # idle long enough that a free-running interval would be mid-phase
        arrived = time.monotonic()
        spool.put_many([b"a"])
        output.notify()
        assert sink.written.wait(5)
        waited = sink.writes[0][0] - arrived
        assert 0.25 <= waited <= 0.6  # the interval, counted from the arrival
        assert sink.writes[0][1] == [b"a"]
    finally:
        stop.set()
        thread.join(5)
    assert spool.depth == 0


def test_a_full_batch_is_written_at_once(spool: Spool) -> None:
    sink = RecordingSink()
    output = RunningOutput(spool, sink, lambda lines, why: None, batch_size=3, flush_interval_s=30)
    thread, stop = start(output)
    try:
        arrived = time.monotonic()
        spool.put_many([b"a", b"b", b"c", b"d"])
        output.notify()
        assert sink.written.wait(5)
        assert sink.writes[0][0] - arrived < 1.0
        assert sink.writes[0][1] == [b"a", b"b", b"c"]
    finally:
        stop.set()
        thread.join(5)


def test_a_notified_burst_is_written_without_waiting_for_the_interval(spool: Spool) -> None:
    sink = RecordingSink()
    output = RunningOutput(
        spool,
        sink,
        lambda lines, why: None,
        batch_size=100,
        flush_interval_s=3600,  # never reached: only the burst can cause this write
        write_on_notify=True,
    )
    thread, stop = start(output)
    try:
        spool.put_many([b"a", b"b"])
        output.notify()
        assert sink.written.wait(60)
        assert sink.writes[0][1] == [b"a", b"b"]
    finally:
        stop.set()
        thread.join(5)
    assert spool.depth == 0


def test_items_put_without_notify_are_found(spool: Spool) -> None:
    sink = RecordingSink()
    output = RunningOutput(
        spool, sink, lambda lines, why: None, batch_size=100, flush_interval_s=0.05
    )
    thread, stop = start(output)
    try:
        spool.put_many([b"metrics"])  # as the historian's self-metrics ticker does
        assert sink.written.wait(5)
    finally:
        stop.set()
        thread.join(5)
    assert [lines for _, lines in sink.writes] == [[b"metrics"]]


class WholeBatchSink:
    """Refuses a whole batch when any line is bad, as InfluxDB 2.x does (400, per item)."""

    def __init__(self, *, per_item: bool = True) -> None:
        self.stored: list[bytes] = []
        self.requests = 0
        self._per_item = per_item

    def write(self, lines: Sequence[bytes]) -> None:
        self.requests += 1
        bad = [line for line in lines if line.startswith(b"bad")]
        if bad:
            reason = f"HTTP 400: unable to parse '{bad[0].decode()}'"
            raise RejectedError(reason, per_item=self._per_item)
        self.stored.extend(lines)

    def close(self) -> None:
        pass


def test_a_rejected_batch_is_split_until_only_the_bad_items_are_dead_lettered(
    spool: Spool,
) -> None:
    items = [b"good %d" % i for i in range(1000)]
    for at in (0, 417, 418, 999):
        items[at] = b"bad %d" % at
    spool.put_many(items)
    sink = WholeBatchSink()
    dead: list[tuple[list[bytes], str]] = []
    counters = Counters()
    output = RunningOutput(
        spool, sink, lambda lines, why: dead.append((list(lines), why)), batch_size=1000,
        counters=counters,
    )  # fmt: skip
    output.drain(threading.Event())
    assert sink.stored == [item for item in items if item.startswith(b"good")]  # in order
    assert dead == [([b"bad %d" % at], f"HTTP 400: unable to parse 'bad {at}'") for at in
                    (0, 417, 418, 999)]  # fmt: skip
    assert spool.depth == 0
    assert counters.get("rejected") == 4 and counters.get("dead_letters") == 4
    assert counters.get("written") == 996
    assert sink.requests < 4 * 2 * 10 + 1  # about 2 log2(n) writes per bad item


def test_a_rejection_of_the_request_itself_dead_letters_the_batch_whole(spool: Spool) -> None:
    spool.put_many([b"good 1", b"bad 2", b"good 3"])
    sink = WholeBatchSink(per_item=False)  # e.g. 401: no part of the batch would pass
    dead: list[list[bytes]] = []
    output = RunningOutput(spool, sink, lambda lines, why: dead.append(list(lines)))
    output.drain(threading.Event())
    assert dead == [[b"good 1", b"bad 2", b"good 3"]] and sink.requests == 1
    assert spool.depth == 0


def test_a_dead_letter_that_cannot_be_kept_leaves_the_items_in_the_spool(spool: Spool) -> None:
    spool.put_many([b"good 1", b"bad 2"])

    def fail(lines: Sequence[bytes], why: str) -> None:
        raise DiskFullError("the disk is full")

    output = RunningOutput(spool, WholeBatchSink(), fail)
    with pytest.raises(DiskFullError):
        output.drain(threading.Event())
    assert [data for _, data in spool.peek(10)] == [b"bad 2"]  # not lost: still to deliver
