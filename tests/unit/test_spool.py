"""bridge.spool: FIFO order, bounds, drop counting, durability across a killed process, damage
and a full disk."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from bridge.spool import DiskFullError, Spool, is_disk_full


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
        from bridge.spool import DiskFullError, Spool, is_disk_full
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


# Damage and a full disk -------------------------------------------------------------------
def _aside(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.corrupt-*"))


def test_a_file_that_is_not_a_database_is_moved_aside_and_a_fresh_one_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not SQLite " * 1000)
    with Spool(path) as spool:
        assert spool.moved_aside == 1
        assert spool.depth == 0
        spool.put_many([b"a"])
        assert [data for _, data in spool.peek(1)] == [b"a"]
    (aside,) = _aside(path)
    assert aside.read_bytes().startswith(b"this is not SQLite")  # kept for an expert
    assert "is corrupt" in caplog.text and aside.name in caplog.text


def test_a_damaged_page_is_found_at_open(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool(path) as spool:
        spool.put_many([b"%06d" % i * 50 for i in range(5000)])
    data = bytearray(path.read_bytes())
    assert len(data) > 20 * 4096
    data[10 * 4096 : 12 * 4096] = b"\xa5" * (2 * 4096)  # two pages of the items' b-tree
    path.write_bytes(bytes(data))
    with Spool(path) as spool:
        assert spool.moved_aside == 1
        assert spool.depth == 0
    assert len(_aside(path)) == 1


def test_corruption_found_while_running_replaces_the_file_and_ids_go_on(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = Spool(path, synchronous="NORMAL")
    spool.put_many([b"x" * 100 for _ in range(3000)])
    old_ids = [row_id for row_id, _ in spool.peek(5)]
    # Damage the file under the open connection; SQLite notices on its next read of it.
    spool._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with path.open("r+b") as f:
        f.seek(3 * 4096)
        f.write(b"\xa5" * 8 * 4096)
    spool._db.execute("PRAGMA shrink_memory")  # forget the cached pages
    assert spool.peek(5000) == []  # reading fails: moved aside, a fresh file has nothing
    assert spool.moved_aside == 1
    assert spool.depth == 0 and spool.dropped == 3000  # what the old file held is counted
    spool.put_many([b"new"])
    ((new_id, data),) = spool.peek(10)
    assert data == b"new" and new_id > max(old_ids)  # a late ack of an old id hits nothing
    spool.ack(old_ids)
    assert spool.depth == 1
    spool.close()
    assert len(_aside(path)) == 1


def test_a_full_disk_raises_disk_full_and_keeps_what_was_committed(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool(path) as spool:
        spool.put_many([b"kept"])
        pages = spool._db.execute("PRAGMA page_count").fetchone()[0]
        spool._db.execute(f"PRAGMA max_page_count={pages + 2}")  # SQLite's own "disk full"
        with pytest.raises(DiskFullError, match="the disk is full"):
            spool.put_many([b"y" * 100_000])
        assert spool.depth == 1 and spool.moved_aside == 0
        assert [data for _, data in spool.peek(10)] == [b"kept"]
    with Spool(path) as spool:
        assert [data for _, data in spool.peek(10)] == [b"kept"]


def unshare_tmpfs() -> list[str]:
    """A command prefix that runs in a private mount namespace with a 400 KiB tmpfs on /mnt,
    without privileges (a user namespace), or skip."""
    prefix = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c"]
    mount = 'mount -t tmpfs -o size=400k tmpfs /mnt && exec "$0" "$@"'
    probe = subprocess.run([*prefix, mount, "true"], capture_output=True, timeout=30, check=False)
    if probe.returncode != 0:
        pytest.skip(f"no unprivileged mount namespace here: {probe.stderr.decode().strip()}")
    return [*prefix, mount]


def test_a_real_full_disk_is_a_disk_full_error_with_one_line() -> None:
    """ENOSPC from a full tmpfs: SQLite says SQLITE_FULL, the spool says DiskFullError."""
    child = textwrap.dedent(
        """
        from bridge.spool import DiskFullError, Spool
        spool = Spool("/mnt/s.db")
        n = 0
        try:
            while True:
                spool.put_many([b"x" * 1000] * 10)
                n += 10
        except DiskFullError as error:
            print(n, spool.depth, spool.moved_aside)
            print(error)
        """
    )
    done = subprocess.run(
        [*unshare_tmpfs(), sys.executable, "-c", child],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.getcwd(),
    )
    assert done.returncode == 0, done.stderr
    counts, message = done.stdout.strip().splitlines()
    n, depth, moved = (int(x) for x in counts.split())
    assert n > 0 and depth == n and moved == 0  # what was committed is still there
    assert message.startswith("spool write failed: the disk is full (database or disk is full)")
    assert "free space in /mnt and restart" in message


def test_what_a_full_disk_looks_like() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))
