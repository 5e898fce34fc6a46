"""bridge.runner: when RunningOutput writes (a full batch at once, a partial one when due)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from bridge.runner import RunningOutput
from bridge.spool import Spool


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
