"""The audit trail's hash chain: each record carries the hash of the one before it.

A record's hash is SHA-256 over a canonical encoding of what it says (sequence number, time,
who, what, on what, old and new value, why, whether accepted, the result) and the previous
record's hash, so changing a stored record, or removing one from the middle, breaks the chain
at that record (`plant audit verify` walks it). One chain per audit log: the twin's log of one
server run, or one run of the edge or the controller; a log's first record chains to `GENESIS`.

The encoding is over values as the historian stores them (old and new as text, `as_text`), so
the chain can be checked from InfluxDB alone. A chain without a key detects edits and gaps, not
an author who rewrites every record after the one changed: that needs the broker's ACL and the
historian's write-once identity too (see bridge/historian/README.md).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the twin imports this module: standard library only at run time
    from core.payload import Event

Scalar = bool | int | float | str | None  # core.payload.Scalar

GENESIS = "0" * 64  # the "previous hash" of a log's first record
HASH_CHARS = 64  # a SHA-256 in hex


def as_text(value: Scalar) -> str | None:
    """An old or new value as the historian stores it (None: not stored)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else repr(value)


def record_hash(
    prev_hash: str,
    *,
    seq: int,
    time_ns: int,
    user: str,
    action: str,
    target: str,
    old: Scalar,
    new: Scalar,
    reason: str,
    accepted: bool,
    result: str,
) -> str:
    """The hash of one record chained to `prev_hash` (the canonical encoding is a JSON list)."""
    canonical: list[Any] = [
        1,  # version of this encoding
        prev_hash,
        int(seq),
        int(time_ns),
        user,
        action,
        target,
        as_text(old),
        as_text(new),
        reason,
        bool(accepted),
        result,
    ]
    text = json.dumps(canonical, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def event_hash(event: Event, prev_hash: str) -> str:
    """`record_hash` of an audit event's fields."""
    return record_hash(
        prev_hash,
        seq=event.seq,
        time_ns=event.time_ns,
        user=event.user,
        action=event.action,
        target=event.target,
        old=event.old,
        new=event.new,
        reason=event.reason,
        accepted=event.accepted,
        result=event.result,
    )


class AuditChain:
    """Chains the audit events of one log as they are made (the edge's and the controller's).

    Args:
        log: names the log (one run of the service); its first record chains to `GENESIS`.
    """

    def __init__(self, log: str) -> None:
        self.log = log
        self.last_hash = GENESIS

    def seal(self, event: Event) -> Event:
        """The event with its log, the previous record's hash and its own hash."""
        prev = self.last_hash
        self.last_hash = event_hash(event, prev)
        return replace(event, log=self.log, prev_hash=prev, hash=self.last_hash)


# Verifying a stored trail ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredRecord:
    """One audit record as the historian stored it (old and new as text, None when absent)."""

    log: str
    seq: int
    time_ns: int
    prev_hash: str
    hash: str
    user: str = ""
    action: str = ""
    target: str = ""
    old: str | None = None
    new: str | None = None
    reason: str = ""
    accepted: bool = True
    result: str = ""

    def computed_hash(self) -> str:
        """The hash its stored fields give (equal to `hash` unless it was edited)."""
        return record_hash(
            self.prev_hash,
            seq=self.seq,
            time_ns=self.time_ns,
            user=self.user,
            action=self.action,
            target=self.target,
            old=self.old,
            new=self.new,
            reason=self.reason,
            accepted=self.accepted,
            result=self.result,
        )


class ChainBreakError(Exception):
    """The first place a stored audit trail is not intact; the message says where and how."""

    def __init__(self, log: str, seq: int, message: str) -> None:
        super().__init__(message)
        self.log = log
        self.seq = seq


def verify_chain(records: list[StoredRecord]) -> tuple[int, int]:
    """Walk every log's records in sequence order; returns (records, logs) when intact.

    Raises `ChainBreakError` at the first record (logs in the order of their first record's time)
    that is stored twice, whose fields do not give its hash (edited), that does not follow the
    previous one (a sequence number missing, or a `prev_hash` that is not the previous record's
    hash), or that begins a log without chaining to `GENESIS` (its first records missing). The
    newest records of a log can be removed unseen: nothing follows them.
    """
    logs: dict[str, list[StoredRecord]] = {}
    for record in records:
        logs.setdefault(record.log, []).append(record)
    ordered = sorted(logs.values(), key=lambda rs: (min(r.time_ns for r in rs), rs[0].log))
    for chain in ordered:
        chain.sort(key=lambda r: (r.seq, r.hash))
        previous: StoredRecord | None = None
        for record in chain:
            where = f"log {record.log or '(none)'}, seq {record.seq}"

            def broken(
                why: str, record: StoredRecord = record, where: str = where
            ) -> ChainBreakError:
                return ChainBreakError(record.log, record.seq, f"{where}: {why}")

            if previous is not None and record.seq == previous.seq:
                raise broken(
                    f"stored twice, with hashes {previous.hash[:12]} and {record.hash[:12]}"
                )
            if record.computed_hash() != record.hash:
                raise broken("its fields do not give its hash: the record was edited")
            if previous is None:
                if record.prev_hash != GENESIS:
                    raise broken("the log's first stored record does not chain to its start: "
                                 "the records before it are missing")  # fmt: skip
            elif record.seq != previous.seq + 1:
                missing = (
                    f"seq {previous.seq + 1}"
                    if record.seq == previous.seq + 2
                    else f"seq {previous.seq + 1}..{record.seq - 1}"
                )
                raise broken(f"{missing} missing (seq {previous.seq} is followed by {record.seq})")
            elif record.prev_hash != previous.hash:
                raise broken(f"its prev_hash is not the hash of seq {previous.seq}")
            previous = record
    return len(records), len(logs)
