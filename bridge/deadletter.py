"""Dead letters: what a bridge service could not accept, kept whole on disk, then announced.

A dead letter is the original bytes (a message, or the line protocol InfluxDB refused), whole,
with the reason, the topic it came from (``influxdb`` for refused lines) and when. It is first
committed to a `DeadLetterStore` (SQLite, beside the service's spool) and only then is the
message it replaces acknowledged (or the refused lines removed from the spool): a dead letter
is as durable as the data it stands for.

Why not only MQTT: a PUBACK says the broker took a message, not that anyone keeps it (with no
subscriber on the topic, Mosquitto drops it at once), and a whole dead letter can be larger
than the broker's packet limit (the original may be close to it, and JSON escaping or base64
makes it larger still). So the store is the record; the topic `pcmm/v1/deadletter/<service>`
is the announcement: every letter is published from the store at QoS 1 and marked published
only when the broker's PUBACK arrived (at least once; a crash or a reconnection may announce
one twice). An announcement holds the whole original when it fits under the broker's limit,
otherwise as much as fits, with ``"truncated": true``; its ``id`` finds the whole letter in
the store (`plant bridge deadletters`). The payload is JSON, version 1, the original as text
when it is UTF-8, otherwise base64:

    {"v": 1, "service": "historian", "reason": "sample 0: quality 'meh' is not one of ...",
     "topic": "pcmm/v1/site1/api_feeder/telemetry", "time_ns": 17..., "id": 12,
     "bytes": 231, "truncated": false, "payload": "{...}"}

The store is bounded by bytes; past the bound the oldest letters are dropped and counted
(`dropped`, persistent), as the spool drops its oldest items.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.spool import SqliteFile, Synchronous

VERSION = 1
MAX_REASON = 1000  # characters of a reason kept (the reason is ours; the payload is kept whole)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ns INTEGER NOT NULL,
    service TEXT NOT NULL,
    reason TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    published INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS letters_unpublished ON letters (id) WHERE published = 0;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('dropped', 0);
"""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter as stored: the original bytes whole, and why they were refused."""

    id: int
    time_ns: int
    service: str
    reason: str
    topic: str
    payload: bytes

    def encode(self, max_bytes: int | None = None) -> bytes:
        """Its JSON announcement (`encode_deadletter`), with its stored time and id."""
        return encode_deadletter(
            self.service,
            self.reason,
            self.topic,
            self.payload,
            time_ns=self.time_ns,
            letter_id=self.id,
            max_bytes=max_bytes,
        )


def encode_deadletter(
    service: str,
    reason: str,
    topic: str,
    payload: bytes,
    *,
    time_ns: int | None = None,
    letter_id: int | None = None,
    max_bytes: int | None = None,
) -> bytes:
    """The JSON announcement of one dead letter: whole, or cut to `max_bytes` if given."""
    obj: dict[str, object] = {
        "v": VERSION,
        "service": service,
        "reason": reason[:MAX_REASON],
        "topic": topic,
        "time_ns": time.time_ns() if time_ns is None else time_ns,
    }
    if letter_id is not None:
        obj["id"] = letter_id
    obj["bytes"] = len(payload)
    try:
        key, text, step = "payload", payload.decode("utf-8"), 1
    except UnicodeDecodeError:
        key, text, step = "payload_b64", base64.b64encode(payload).decode("ascii"), 4
    keep = len(text)
    while True:
        obj["truncated"] = keep < len(text)
        obj[key] = text[:keep]
        data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        if max_bytes is None or len(data) <= max_bytes or keep == 0:
            return data
        # Escaping makes the size grow faster than the text: shrink in proportion, then again.
        keep = max(0, min(keep - step, keep * max_bytes // len(data) - 64))
        keep -= keep % step  # whole base64 quanta


class DeadLetterStore(SqliteFile):
    """Dead letters, durable and whole, and which of them the broker confirmed.

    Safe to share between threads. `add_many` returns once the letters are on disk (fsync
    with ``synchronous="FULL"``). Corruption and a full disk are handled as for the spool
    (`bridge.spool.SqliteFile`).

    Args:
        path: The SQLite file (created with its directory if missing).
        max_bytes: Payload and reason bytes kept at most; past it the oldest letters go.
        synchronous: ``"FULL"`` (survives power loss) or ``"NORMAL"`` (a killed process).
    """

    _schema = _SCHEMA
    _sequence = "letters"
    _what = "dead-letter store"

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        synchronous: Synchronous = "FULL",
    ) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.max_bytes = max_bytes
        self._count = 0
        self._bytes = 0
        self._waiting = 0
        self._dropped = 0
        super().__init__(path, synchronous)

    def _load(self, db: sqlite3.Connection) -> None:
        count, size, waiting = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload) + LENGTH(reason)), 0),"
            " COALESCE(SUM(published = 0), 0) FROM letters"
        ).fetchone()
        (dropped,) = db.execute("SELECT value FROM meta WHERE key='dropped'").fetchone()
        self._count, self._bytes, self._waiting = int(count), int(size), int(waiting)
        self._dropped = max(self._dropped, int(dropped))
        if self._dropped > int(dropped):
            db.execute("UPDATE meta SET value = ? WHERE key='dropped'", (self._dropped,))
        self._note_last_id(db)

    def _clear(self) -> int:
        lost = self._count
        self._dropped += lost
        self._count = self._bytes = self._waiting = 0
        return lost

    @property
    def count(self) -> int:
        """Letters kept."""
        return self._count

    @property
    def waiting(self) -> int:
        """Letters not yet confirmed by the broker."""
        return self._waiting

    @property
    def dropped(self) -> int:
        """Letters dropped to stay within `max_bytes` (or lost with a corrupt file), ever."""
        return self._dropped

    def add_many(
        self, letters: Iterable[tuple[str, str, bytes]], service: str, time_ns: int | None = None
    ) -> list[int]:
        """Store (reason, topic, payload) letters in one transaction; return their ids."""
        now = time.time_ns() if time_ns is None else time_ns
        rows = [(reason[:MAX_REASON], topic, bytes(payload)) for reason, topic, payload in letters]
        if not rows:
            return []
        size = sum(len(payload) + len(reason.encode()) for reason, _, payload in rows)

        def add(db: sqlite3.Connection) -> list[int]:
            db.execute("BEGIN IMMEDIATE")
            dropped, freed, unsent = self._evict(db, size)
            ids = [
                int(
                    db.execute(
                        "INSERT INTO letters (time_ns, service, reason, topic, payload)"
                        " VALUES (?, ?, ?, ?, ?) RETURNING id",
                        (now, service, reason, topic, payload),
                    ).fetchone()[0]
                )
                for reason, topic, payload in rows
            ]
            if dropped:
                db.execute("UPDATE meta SET value = value + ? WHERE key='dropped'", (dropped,))
            self._note_last_id(db)
            db.execute("COMMIT")
            self._count += len(rows) - dropped
            self._bytes += size - freed
            self._waiting += len(rows) - unsent
            self._dropped += dropped
            return ids

        return self._guarded("write", add)

    def _evict(self, db: sqlite3.Connection, size: int) -> tuple[int, int, int]:
        """Delete the oldest letters so that `size` more bytes fit (the new ones are kept)."""
        over = self._bytes + size - self.max_bytes
        if over <= 0:
            return 0, 0, 0
        count, freed, unsent, last = 0, 0, 0, None
        for row_id, length, published in db.execute(
            "SELECT id, LENGTH(payload) + LENGTH(reason), published FROM letters ORDER BY id"
        ):
            if freed >= over:
                break
            count, freed, last = count + 1, freed + int(length), int(row_id)
            unsent += not published
        if last is not None:
            db.execute("DELETE FROM letters WHERE id <= ?", (last,))
        return count, freed, unsent

    def unpublished(self, limit: int, after_id: int = 0) -> list[DeadLetter]:
        """The oldest letters the broker has not confirmed, with ids above `after_id`."""

        def read(db: sqlite3.Connection) -> list[DeadLetter]:
            rows = db.execute(
                "SELECT id, time_ns, service, reason, topic, payload FROM letters"
                " WHERE published = 0 AND id > ? ORDER BY id LIMIT ?",
                (after_id, max(0, limit)),
            ).fetchall()
            return [_letter(row) for row in rows]

        return self._guarded("read", read)

    def mark_published(self, ids: Sequence[int]) -> None:
        """The broker confirmed these letters (unknown or already marked ids are ignored)."""
        if not ids:
            return

        def mark(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            cursor = db.execute(
                "UPDATE letters SET published = 1 WHERE published = 0"
                " AND id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(ids)),),
            )
            marked = cursor.rowcount
            db.execute("COMMIT")
            self._waiting -= max(0, marked)

        self._guarded("update", mark)

    def __enter__(self) -> DeadLetterStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _letter(row: Any) -> DeadLetter:
    row_id, time_ns, service, reason, topic, payload = row
    return DeadLetter(
        id=int(row_id),
        time_ns=int(time_ns),
        service=str(service),
        reason=str(reason),
        topic=str(topic),
        payload=payload,
    )


def read_deadletters(
    path: str | Path, after_id: int = 0, limit: int | None = None
) -> list[DeadLetter]:
    """Letters of a store file, oldest first, read-only (the service may be running)."""
    db = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT id, time_ns, service, reason, topic, payload FROM letters"
            " WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, -1 if limit is None else limit),
        ).fetchall()
    finally:
        db.close()
    return [_letter(row) for row in rows]
