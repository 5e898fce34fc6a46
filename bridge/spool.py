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

Damage and a full disk (`SqliteFile`, shared with the dead-letter store): a file SQLite finds
corrupt, when it is opened (`PRAGMA quick_check`) or by any later statement, is moved aside
(renamed `<name>.corrupt-<UTC time>`, its -wal with it, for an expert to salvage with
`sqlite3 ... .recover`) and a fresh file started, so that the service goes on; `moved_aside`
counts it (a self-metric) and a warning names the file. What the old file held is counted in
`dropped`. A full disk (SQLITE_FULL, "database or disk is full", or ENOSPC) raises
`DiskFullError`: the transaction is rolled back, so nothing acknowledged is lost, and the
service must stop with that message rather than go on failing (the bridge CLI exits 2);
restarted after space was freed, it resumes from what is on disk.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal, TypeVar

Synchronous = Literal["NORMAL", "FULL"]
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids are never reused, so a late
    data BLOB NOT NULL                     -- ack of a dropped item cannot delete a new one
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('dropped', 0);
"""
_log = logging.getLogger("bridge.spool")


class SpoolError(RuntimeError):
    """The spool file cannot be opened or written."""


class DiskFullError(SpoolError):
    """No room left on the disk for the spool: stop; nothing acknowledged was lost."""


class _CorruptError(Exception):
    """`PRAGMA quick_check` found damage."""


def _primary_code(error: sqlite3.Error) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def is_corrupt(error: BaseException) -> bool:
    """SQLite says the file is damaged or is not a database."""
    if isinstance(error, _CorruptError):
        return True
    if not isinstance(error, sqlite3.DatabaseError):
        return False
    if _primary_code(error) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return True
    text = str(error)
    return "malformed" in text or "not a database" in text


def is_disk_full(error: BaseException) -> bool:
    """The disk (or SQLite's page limit) is full."""
    if isinstance(error, OSError):
        return error.errno == errno.ENOSPC
    if isinstance(error, sqlite3.Error):
        full = _primary_code(error) == sqlite3.SQLITE_FULL
        return full or "database or disk is full" in str(error)
    return False


class SqliteFile:
    """One SQLite file of a bridge service: WAL, explicit transactions, one lock.

    It survives corruption and names a full disk (see the module docstring). A subclass gives
    its schema, reads its in-memory state in `_load` and forgets it in `_clear` (a fresh file
    replaced a corrupt one); `_sequence` names its AUTOINCREMENT table, so that ids in a fresh
    file continue after the old ones (a late ack of an old id must not hit a new row).
    """

    _schema = ""
    _sequence = ""
    _what = "spool"

    def __init__(self, path: str | Path, synchronous: Synchronous) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = Path(path)
        self.moved_aside = 0  # corrupt files moved aside since this object was made
        self._synchronous = synchronous
        self._lock = threading.Lock()
        self._last_id = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = self._connect()
            except (sqlite3.DatabaseError, _CorruptError) as error:
                if not is_corrupt(error):
                    raise
                self._move_aside(error)
                self._db = self._connect()
        except (sqlite3.Error, OSError, _CorruptError) as error:
            raise self._failure(f"cannot open {self._what} {self.path}", error) from None

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._synchronous}")
            found = [str(row[0]) for row in db.execute("PRAGMA quick_check(5)")]
            if found != ["ok"]:
                raise _CorruptError("; ".join(found))
            db.executescript(self._schema)
            if self._last_id and self._sequence:
                db.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)",
                    (self._sequence, self._last_id),
                )
            self._load(db)
        except BaseException:
            db.close()
            raise
        return db

    def _load(self, db: sqlite3.Connection) -> None:
        """Read the in-memory state from a newly opened file."""

    def _clear(self) -> int:
        """Forget the state of a file moved aside; return how many items it held."""
        return 0

    def _note_last_id(self, db: sqlite3.Connection) -> None:
        row = db.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = ?", (self._sequence,)
        ).fetchone()
        if row is not None:
            self._last_id = max(self._last_id, int(row[0]))

    def _move_aside(self, error: BaseException) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.rename(f"{aside}{suffix}")
        self.moved_aside += 1
        _log.warning(
            "%s %s is corrupt (%s): moved aside to %s, starting a fresh one",
            self._what,
            self.path,
            error,
            aside.name,
        )
        return aside

    def _failure(self, doing: str, error: BaseException) -> SpoolError:
        if is_disk_full(error):
            return DiskFullError(
                f"{doing}: the disk is full ({error}); free space in {self.path.parent}"
                " and restart (nothing acknowledged was lost)"
            )
        return SpoolError(f"{doing}: {error}")

    def _guarded(self, doing: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` under the lock; if the file turns out corrupt, replace it and run again."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    return work(self._db)
                except sqlite3.Error as error:
                    self._rollback()
                    if attempt == 2 or not is_corrupt(error):
                        raise self._failure(f"{self._what} {doing} failed", error) from None
                    self._replace(error)
            raise AssertionError("unreachable")

    def _replace(self, error: BaseException) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        try:
            self._move_aside(error)
            lost = self._clear()
            if lost:
                _log.warning("%d items of the corrupt %s are not delivered", lost, self._what)
            self._db = self._connect()
        except (sqlite3.Error, OSError, _CorruptError) as failure:
            raise self._failure(f"cannot replace {self._what} {self.path}", failure) from None

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # no transaction was open
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        """Checkpoint and close the file."""
        with self._lock:
            self._db.close()


class Spool(SqliteFile):
    """A durable FIFO of byte strings, bounded by items and bytes, dropping the oldest first.

    Args:
        path: The SQLite file (created with its directory if missing).
        max_items: At most this many items are kept.
        max_bytes: At most this many payload bytes are kept (SQLite's own overhead excluded).
        synchronous: ``"FULL"`` (survives power loss) or ``"NORMAL"`` (survives a killed process).
    """

    _schema = _SCHEMA
    _sequence = "items"
    _what = "spool"

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
        self.max_items = max_items
        self.max_bytes = max_bytes
        # Depth and size are kept in memory: this object is the file's only writer.
        self._depth = 0
        self._bytes = 0
        self._dropped = 0
        super().__init__(path, synchronous)

    def _load(self, db: sqlite3.Connection) -> None:
        count, size = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM items"
        ).fetchone()
        (dropped,) = db.execute("SELECT value FROM meta WHERE key='dropped'").fetchone()
        self._depth = int(count)
        self._bytes = int(size)
        # A fresh file after a corrupt one starts from this process's count.
        self._dropped = max(self._dropped, int(dropped))
        if self._dropped > int(dropped):
            db.execute("UPDATE meta SET value = ? WHERE key='dropped'", (self._dropped,))
        self._note_last_id(db)

    def _clear(self) -> int:
        lost = self._depth
        self._dropped += lost
        self._depth = self._bytes = 0
        return lost

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
        """Items dropped to stay within the limits (or lost with a corrupt file), ever."""
        return self._dropped

    def put_many(self, items: Iterable[bytes]) -> None:
        """Append items in one transaction; when it returns, they are durable.

        If the queue would exceed its limits, the oldest items (already queued, then the oldest
        of these) are dropped and counted. Raises `DiskFullError` when the disk is full (the
        items are not stored), `SpoolError` for other failures.
        """
        batch = [bytes(item) for item in items]
        if not batch:
            return
        # Items that alone exceed the limits: keep the newest that fit.
        skip, size = 0, sum(map(len, batch))
        while skip < len(batch) and (len(batch) - skip > self.max_items or size > self.max_bytes):
            size -= len(batch[skip])
            skip += 1
        keep = batch[skip:]

        def put(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            evicted, freed = self._evict(db, len(keep), size)
            db.executemany("INSERT INTO items (data) VALUES (?)", ((b,) for b in keep))
            lost = evicted + skip
            if lost:
                db.execute("UPDATE meta SET value = value + ? WHERE key='dropped'", (lost,))
            self._note_last_id(db)
            db.execute("COMMIT")
            self._depth += len(keep) - evicted
            self._bytes += size - freed
            self._dropped += lost

        self._guarded("write", put)

    def _evict(self, db: sqlite3.Connection, items: int, size: int) -> tuple[int, int]:
        """Delete the oldest rows so that `items` more items of `size` bytes fit."""
        over_items = self._depth + items - self.max_items
        over_bytes = self._bytes + size - self.max_bytes
        if over_items <= 0 and over_bytes <= 0:
            return 0, 0
        count, freed, last = 0, 0, None
        for row_id, length in db.execute("SELECT id, LENGTH(data) FROM items ORDER BY id"):
            if count >= over_items and freed >= over_bytes:
                break
            count, freed, last = count + 1, freed + int(length), int(row_id)
        if last is not None:
            db.execute("DELETE FROM items WHERE id <= ?", (last,))
        return count, freed

    def peek(self, n: int) -> list[tuple[int, bytes]]:
        """The oldest `n` items as (id, data), oldest first; they stay queued until acked."""

        def read(db: sqlite3.Connection) -> list[tuple[int, bytes]]:
            rows = db.execute(
                "SELECT id, data FROM items ORDER BY id LIMIT ?", (max(0, n),)
            ).fetchall()
            return [(int(row_id), bytes(data)) for row_id, data in rows]

        return self._guarded("read", read)

    def ack(self, ids: Sequence[int]) -> None:
        """Remove delivered items by id (ids already dropped or acked are ignored)."""
        if not ids:
            return

        def delete(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            lo, hi = min(ids), max(ids)
            if hi - lo + 1 == len(ids) and len(set(ids)) == len(ids):
                # The usual case, a contiguous run from peek(): a range scan.
                cursor = db.execute(
                    "DELETE FROM items WHERE id BETWEEN ? AND ? RETURNING LENGTH(data)",
                    (lo, hi),
                )
            else:
                cursor = db.execute(
                    "DELETE FROM items WHERE id IN (SELECT value FROM json_each(?)) "
                    "RETURNING LENGTH(data)",
                    (json.dumps(list(ids)),),
                )
            lengths = [int(length) for (length,) in cursor.fetchall()]
            db.execute("COMMIT")
            self._depth -= len(lengths)
            self._bytes -= sum(lengths)

        self._guarded("ack", delete)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
