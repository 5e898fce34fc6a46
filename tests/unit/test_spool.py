"""bridge.spool: FIFO order, bounds, drop counting, durability across a killed process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from bridge.spool import Spool


def test_fifo_peek_does_not_remove_and_ack_does(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as spool:
        spool.put_many([b"a", b"b", b"c"])
        spool.put_many([b"d"])
        assert [data for _, data in spool.peek(10)] == [b"a", b"b", b"c", b"d"]
        first = spool.peek(2)
        assert [data for _, data in first] == [b"a", b"b"]
        assert spool.peek(2) == first  # not consumed until acked
        spool.ack([row_id for row_id, _ in first])
        assert [data for _, data in spool.peek(10)] == [b"c", b"d"]
        assert spool.depth == 2
        assert spool.size_bytes == 2


def test_ack_of_scattered_and_unknown_ids(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as spool:
        spool.put_many([b"%d" % i for i in range(10)])
        ids = [row_id for row_id, _ in spool.peek(10)]
        spool.ack([ids[1], ids[5], ids[9], 10_000])
        assert [data for _, data in spool.peek(10)] == [
            b"0", b"2", b"3", b"4", b"6", b"7", b"8"
        ]  # fmt: skip
        assert spool.depth == 7
        spool.ack([ids[1]])  # twice: ignored
        assert spool.depth == 7


def test_full_by_items_drops_oldest_and_counts(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_items=5) as spool:
        spool.put_many([b"%d" % i for i in range(4)])
        spool.put_many([b"4", b"5", b"6"])
        assert [data for _, data in spool.peek(10)] == [b"2", b"3", b"4", b"5", b"6"]
        assert spool.dropped == 2
        # A batch larger than the whole spool keeps its newest items.
        spool.put_many([b"%d" % i for i in range(100, 108)])
        assert [data for _, data in spool.peek(10)] == [b"%d" % i for i in range(103, 108)]
        assert spool.dropped == 2 + 5 + 3
        assert spool.depth == 5


def test_full_by_bytes_drops_oldest(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_bytes=10) as spool:
        spool.put_many([b"aaaa", b"bbbb"])
        spool.put_many([b"cccc"])
        assert [data for _, data in spool.peek(10)] == [b"bbbb", b"cccc"]
        assert spool.size_bytes == 8
        assert spool.dropped == 1


def test_ack_after_drop_does_not_touch_new_items(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db", max_items=2) as spool:
        spool.put_many([b"a", b"b"])
        stale = [row_id for row_id, _ in spool.peek(2)]
        spool.put_many([b"c", b"d"])  # a and b dropped while a consumer holds their ids
        spool.ack(stale)
        assert [data for _, data in spool.peek(10)] == [b"c", b"d"]
        assert spool.depth == 2


def test_state_and_drop_count_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool(path, max_items=3) as spool:
        spool.put_many([b"1", b"2", b"3", b"4"])
        spool.ack([spool.peek(1)[0][0]])
    with Spool(path, max_items=3) as spool:
        assert [data for _, data in spool.peek(10)] == [b"3", b"4"]
        assert (spool.depth, spool.size_bytes, spool.dropped) == (2, 2, 1)


def test_threads_put_and_ack_concurrently(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.db") as spool:
        seen: list[bytes] = []
        done = threading.Event()

        def consume() -> None:
            while not done.is_set() or spool.depth:
                rows = spool.peek(50)
                seen.extend(data for _, data in rows)
                spool.ack([row_id for row_id, _ in rows])

        consumer = threading.Thread(target=consume)
        consumer.start()
        for i in range(0, 5000, 100):
            spool.put_many([b"%05d" % j for j in range(i, i + 100)])
        done.set()
        consumer.join(timeout=30)
        assert seen == [b"%05d" % j for j in range(5000)]


def test_committed_items_survive_sigkill(tmp_path: Path) -> None:
    """A child puts batches and reports each commit; SIGKILL it; all reported batches remain."""
    path = tmp_path / "s.db"
    child = textwrap.dedent(
        f"""
        import sys
        from bridge.spool import Spool
        spool = Spool({str(path)!r})
        i = 0
        while True:
            spool.put_many([b"%08d" % j for j in range(i, i + 100)])
            i += 100
            print(i, flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    assert proc.stdout is not None
    committed = 0
    for line in proc.stdout:
        committed = int(line)
        if committed >= 20_000:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    with Spool(path) as spool:
        assert spool.depth >= committed
        rows = spool.peek(committed)
        assert [data for _, data in rows] == [b"%08d" % j for j in range(committed)]


def test_bad_limits_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Spool(tmp_path / "s.db", max_items=0)
    with pytest.raises(ValueError):
        Spool(tmp_path / "s.db", synchronous="OFF")  # type: ignore[arg-type]
