"""A durable, bounded FIFO queue on SQLite: the store-and-forward buffer of the bridge services.

A producer `put_many`s items in one transaction; a consumer `peek`s the oldest ones, delivers
them, then `ack`s their ids. What `put_many` returned from is on disk: a process killed with
SIGKILL (or, with ``synchronous="FULL"``, a machine losing power) loses nothing committed.
Delivery is at least once: items peeked but not acked are peeked again after a restart, so the
consumer's writes must be idempotent.

The queue is bounded by a number of items and a number of bytes. When a `put_many` would
overflow it, the *oldest* items are dropped (the newest data is the most useful after a long
outage) and counted in `dropped`, which is stored with the queue and survives restarts.

Durability, WAL and ``synchronous``: the journal is a write-ahead log, so a reader never blocks
the writer and a commit appends to one file. ``synchronous="FULL"`` (the default) fsyncs the
WAL at every commit: a commit survives an OS crash or power loss, which is what the historian
promises the broker when it acknowledges a message after `put_many`. ``"NORMAL"`` fsyncs only
at checkpoints: a commit still survives the death of the process (the WAL is in the OS page
cache), but the last commits may roll back on power loss. Callers batch many items per commit,
so the fsync is paid per batch, not per item (see `python -m bench.spool`).

One `Spool` object is safe to share between threads (a lock serialises its one connection);
one spool file belongs to one process.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

Synchronous = Literal["NORMAL", "FULL"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids are never reused, so a late
    data BLOB NOT NULL                     -- ack of a dropped item cannot delete a new one
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('dropped', 0);
"""


class SpoolError(RuntimeError):
    """The spool file cannot be opened or written."""


class Spool:
    """A durable FIFO of byte strings, bounded by items and bytes, dropping the oldest first.

    Args:
        path: The SQLite file (created with its directory if missing).
        max_items: At most this many items are kept.
        max_bytes: At most this many payload bytes are kept (SQLite's own overhead excluded).
        synchronous: ``"FULL"`` (survives power loss) or ``"NORMAL"`` (survives a killed process).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_items: int = 1_000_000,
        max_bytes: int = 512 * 1024 * 1024,
        synchronous: Synchronous = "FULL",
    ) -> None:
        if max_items < 1 or max_bytes < 1:
            raise ValueError("spool limits must be at least 1")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = Path(path)
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(_SCHEMA)
            count, size = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM items"
            ).fetchone()
            (dropped,) = self._db.execute("SELECT value FROM meta WHERE key='dropped'").fetchone()
        except sqlite3.Error as error:
            raise SpoolError(f"cannot open spool {self.path}: {error}") from None
        # Depth and size are kept in memory: this object is the file's only writer.
        self._depth = int(count)
        self._bytes = int(size)
        self._dropped = int(dropped)

    @property
    def depth(self) -> int:
        """Items waiting (put and not yet acked or dropped)."""
        return self._depth

    @property
    def size_bytes(self) -> int:
        """Payload bytes waiting."""
        return self._bytes

    @property
    def dropped(self) -> int:
        """Items dropped to stay within the limits, ever (persistent)."""
        return self._dropped

    def put_many(self, items: Iterable[bytes]) -> None:
        """Append items in one transaction; when it returns, they are durable.

        If the queue would exceed its limits, the oldest items (already queued, then the oldest
        of these) are dropped and counted.
        """
        batch = [bytes(item) for item in items]
        if not batch:
            return
        with self._lock:
            # Items that alone exceed the limits: keep the newest that fit.
            skip, size = 0, sum(map(len, batch))
            while skip < len(batch) and (
                len(batch) - skip > self.max_items or size > self.max_bytes
            ):
                size -= len(batch[skip])
                skip += 1
            keep = batch[skip:]
            try:
                self._db.execute("BEGIN IMMEDIATE")
                evicted, freed = self._evict(len(keep), size)
                self._db.executemany("INSERT INTO items (data) VALUES (?)", ((b,) for b in keep))
                lost = evicted + skip
                if lost:
                    self._db.execute(
                        "UPDATE meta SET value = value + ? WHERE key='dropped'", (lost,)
                    )
                self._db.execute("COMMIT")
            except sqlite3.Error as error:
                self._rollback()
                raise SpoolError(f"spool write failed: {error}") from None
            self._depth += len(keep) - evicted
            self._bytes += size - freed
            self._dropped += lost

    def _evict(self, items: int, size: int) -> tuple[int, int]:
        """Delete the oldest rows so that `items` more items of `size` bytes fit."""
        over_items = self._depth + items - self.max_items
        over_bytes = self._bytes + size - self.max_bytes
        if over_items <= 0 and over_bytes <= 0:
            return 0, 0
        count, freed, last = 0, 0, None
        for row_id, length in self._db.execute("SELECT id, LENGTH(data) FROM items ORDER BY id"):
            if count >= over_items and freed >= over_bytes:
                break
            count, freed, last = count + 1, freed + int(length), int(row_id)
        if last is not None:
            self._db.execute("DELETE FROM items WHERE id <= ?", (last,))
        return count, freed

    def peek(self, n: int) -> list[tuple[int, bytes]]:
        """The oldest `n` items as (id, data), oldest first; they stay queued until acked."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, data FROM items ORDER BY id LIMIT ?", (max(0, n),)
            ).fetchall()
        return [(int(row_id), bytes(data)) for row_id, data in rows]

    def ack(self, ids: Sequence[int]) -> None:
        """Remove delivered items by id (ids already dropped or acked are ignored)."""
        if not ids:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                lo, hi = min(ids), max(ids)
                if hi - lo + 1 == len(ids) and len(set(ids)) == len(ids):
                    # The usual case, a contiguous run from peek(): a range scan.
                    cursor = self._db.execute(
                        "DELETE FROM items WHERE id BETWEEN ? AND ? RETURNING LENGTH(data)",
                        (lo, hi),
                    )
                else:
                    cursor = self._db.execute(
                        "DELETE FROM items WHERE id IN (SELECT value FROM json_each(?)) "
                        "RETURNING LENGTH(data)",
                        (json.dumps(list(ids)),),
                    )
                lengths = [int(length) for (length,) in cursor.fetchall()]
                self._db.execute("COMMIT")
            except sqlite3.Error as error:
                self._rollback()
                raise SpoolError(f"spool ack failed: {error}") from None
            self._depth -= len(lengths)
            self._bytes -= sum(lengths)

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # no transaction was open
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        """Checkpoint and close the file."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
