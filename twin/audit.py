"""The twin's audit trail: every command and fault, accepted or refused (ALCOA+, Annex 11).

Bounded three ways, so that no client can exhaust the twin's memory through it:

- **Text.** Every text field of a record, and a value that is text, is cut to
  `core.text.MAX_FIELD_CHARS` with a marker saying how long it was (`core.text.clip`). The
  entry points (the OPC UA methods, the edge) refuse a reason longer than `MAX_REASON_CHARS`
  before it gets here, so an accepted reason is never cut; what is cut is the refused junk,
  e.g. a 10 MB string written to a setpoint, which is still recorded as a bounded record.
- **Refused requests, per user.** At most `REFUSED_BURST` refused records at once, then one
  per `REFUSED_EVERY_S` plant seconds (a token bucket). What the limit holds back does not
  vanish from the trail: once the user's bucket has room again (at the user's next record,
  or as the plant advances, `tick`) one `rate_limit` record says how many refused requests
  were not recorded one by one, between which plant times, and what the last one was.
  Accepted records are never held back: they are real changes to the plant.
- **Length.** The log keeps the newest `max_records` records (`MAX_RECORDS`). Sequence
  numbers keep counting for the log's life (1, 2, 3, ...), so a reader paging with `since`
  sees records dropped here as a jump in the first sequence number it gets. Keeping the
  newest is right for evidence that has left: the OPC UA server emits each record as an event
  as it is made and the edge backfills what it missed (`AuditSince`, records after its mark),
  so a record is dropped here only when `MAX_RECORDS` newer ones exist, hours of records at
  the plant's command rates, by which time the edge has forwarded it.

**Chained.** Each record carries the hash of the record before it (`prev_hash`, `GENESIS` for
the first) and its own (`hash`), `core.audit_chain.record_hash` over its fields as they are
published, its time included: `stamp` turns plant seconds into the nanoseconds the record is
published with (the OPC UA server sets it from its clock; by default plant seconds since the
epoch, to the microsecond). Dropping old records from memory does not touch the chain.

Memory at worst: `MAX_RECORDS` records of 7 text fields of at most about 1,000 characters,
about 70 MB; a typical record is about 200 bytes (2 MB for the whole log).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from core.audit_chain import GENESIS, record_hash
from core.text import MAX_FIELD_CHARS, clip, shown

MAX_RECORDS = 10_000  # records kept in memory, the newest (ids keep counting)
REFUSED_BURST = 50  # refused records one user may add at once
REFUSED_EVERY_S = 10.0  # then one more every this many plant seconds, s
RATE_LIMIT_ACTION = "rate_limit"  # the action of a record summing up what the limit held back
SUMMARY_REASON = "refused requests beyond the audit trail's rate limit"  # that record's reason


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """Who did what to which target, old and new value, when (plant time), why, and the outcome."""

    seq: int
    time: float
    user: str
    action: str
    target: str
    old: Any
    new: Any
    reason: str
    accepted: bool
    result: str
    time_ns: int = 0  # `time` as published (AuditLog.stamp), ns since the epoch
    prev_hash: str = GENESIS  # the hash of the record before it in the log
    hash: str = ""  # core.audit_chain.record_hash of this record


def plant_ns(plant_s: float) -> int:
    """The default `AuditLog.stamp`: plant seconds as ns, to the microsecond (as OPC UA and
    Python's datetime carry a time)."""
    return round(plant_s * 1e6) * 1000


@dataclass(slots=True)
class _Bucket:
    """One user's allowance of refused records, and what it held back."""

    tokens: float
    updated: float  # plant time of `tokens`
    held: int = 0  # refused records held back since the last summary
    first: float = 0.0  # plant time of the first and the last held back
    last: float = 0.0
    last_what: str = ""  # what the last one held back was


class AuditLog:
    """Append-only and bounded (see the module docstring); readers page with `since(seq)`.

    Args:
        max_records: how many records are kept, the newest.
        refused_burst: refused records one user may add at once.
        refused_every_s: then one more every this many plant seconds.
    """

    def __init__(
        self,
        max_records: int = MAX_RECORDS,
        *,
        refused_burst: int = REFUSED_BURST,
        refused_every_s: float = REFUSED_EVERY_S,
    ) -> None:
        if max_records < 1 or refused_burst < 1 or refused_every_s <= 0:
            raise ValueError("audit log limits must be positive")
        self.max_records = max_records
        self.refused_burst = refused_burst
        self.refused_every_s = refused_every_s
        self.held_back = 0  # refused records the rate limit held back, ever
        self._records: list[AuditRecord] = []
        self._first_seq = 1  # the sequence number of _records[0]
        self._buckets: dict[str, _Bucket] = {}
        self._last_hash = GENESIS  # of the newest record, dropped from memory or not
        #: Plant seconds -> the ns a record is published with (set by whoever publishes it).
        self.stamp: Callable[[float], int] = plant_ns

    def record(
        self,
        time: float,
        user: str,
        action: str,
        target: str,
        *,
        old: Any = None,
        new: Any = None,
        reason: str = "",
        accepted: bool,
        result: str = "",
    ) -> AuditRecord | None:
        """Append a record (its text bounded); None when the rate limit held a refusal back."""
        user = clip(str(user))
        if accepted:
            bucket = self._buckets.get(user)
            if bucket is not None and bucket.held:
                self._summary(user, bucket, time)  # what was held back comes first
        else:
            bucket = self._refill(user, time)
            if bucket.tokens < 1.0:
                if not bucket.held:
                    bucket.first = time
                bucket.held += 1
                bucket.last = time
                bucket.last_what = clip(f"{action} {target}: {result}", 200)
                self.held_back += 1
                return None
            bucket.tokens -= 1.0
            if bucket.held:
                self._summary(user, bucket, time)
        return self._append(
            time,
            user,
            clip(str(action)),
            clip(str(target)),
            _bounded(old),
            _bounded(new),
            clip(str(reason)),
            accepted,
            clip(str(result)),
        )

    def tick(self, now: float) -> None:
        """Write the summaries whose users' buckets have room again; forget full buckets."""
        for user in list(self._buckets):
            bucket = self._refill(user, now)
            if bucket.held and bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                self._summary(user, bucket, now)
            elif not bucket.held and bucket.tokens >= self.refused_burst:
                del self._buckets[user]

    def bind_stamp(self, stamp: Callable[[float], int]) -> None:
        """Publish records with `stamp` from now on; the records kept are stamped and chained
        again with it. Only for a log none of whose records has been published yet (the OPC
        UA server binds its clock before it emits the first event)."""
        self.stamp = stamp
        records, self._records = self._records, []
        self._last_hash = records[0].prev_hash if records else self._last_hash
        for record in records:  # contiguous from _first_seq: _append numbers them as they were
            self._append(
                record.time,
                record.user,
                record.action,
                record.target,
                record.old,
                record.new,
                record.reason,
                record.accepted,
                record.result,
            )

    def since(self, seq: int, limit: int | None = None) -> list[AuditRecord]:
        """Records with a sequence number above `seq` that are still kept, oldest first."""
        start = max(0, seq + 1 - self._first_seq)
        end = None if limit is None else start + max(0, limit)
        return self._records[start:end]

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest record (0 before the first)."""
        return self._first_seq + len(self._records) - 1

    @property
    def first_seq(self) -> int:
        """The sequence number of the oldest record kept (last_seq + 1 when none is)."""
        return self._first_seq

    def __iter__(self) -> Iterator[AuditRecord]:
        return iter(self._records)

    def __len__(self) -> int:
        """How many records are kept (at most `max_records`)."""
        return len(self._records)

    # internals --------------------------------------------------------------------------------
    def _append(self, *fields: Any) -> AuditRecord:
        entry = AuditRecord(self.last_seq + 1, *fields)
        time_ns = self.stamp(entry.time)
        digest = record_hash(
            self._last_hash,
            seq=entry.seq,
            time_ns=time_ns,
            user=entry.user,
            action=entry.action,
            target=entry.target,
            old=entry.old,
            new=entry.new,
            reason=entry.reason,
            accepted=entry.accepted,
            result=entry.result,
        )
        entry = replace(entry, time_ns=time_ns, prev_hash=self._last_hash, hash=digest)
        self._last_hash = digest
        self._records.append(entry)
        excess = len(self._records) - self.max_records
        if excess > 0:
            del self._records[:excess]
            self._first_seq += excess
        return entry

    def _refill(self, user: str, now: float) -> _Bucket:
        bucket = self._buckets.get(user)
        if bucket is None:
            bucket = self._buckets[user] = _Bucket(float(self.refused_burst), now)
        elif now > bucket.updated:
            earned = (now - bucket.updated) / self.refused_every_s
            bucket.tokens = min(float(self.refused_burst), bucket.tokens + earned)
            bucket.updated = now
        return bucket

    def _summary(self, user: str, bucket: _Bucket, now: float) -> None:
        held, bucket.held = bucket.held, 0
        self._append(
            now,
            user,
            RATE_LIMIT_ACTION,
            "audit",
            None,
            held,
            SUMMARY_REASON,
            False,
            clip(
                f"{held} refused requests from {bucket.first:g} s to {bucket.last:g} s not "
                f"recorded one by one (at most {self.refused_burst} at once, then one every "
                f"{self.refused_every_s:g} s); the last: {bucket.last_what}"
            ),
        )


def _bounded(value: Any) -> Any:
    """A record's old or new value, bounded: scalars as they are, anything else as short text."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= 64 else shown(value)
    if isinstance(value, str):
        return clip(value, MAX_FIELD_CHARS)
    return shown(value, MAX_FIELD_CHARS)
