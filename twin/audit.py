"""The twin's audit trail: every command and fault, accepted or rejected (ALCOA+, Annex 11)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


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


class AuditLog:
    """Append-only; readers page through it with `since(seq)` so none is missed."""

    def __init__(self) -> None:
        self._records: list[AuditRecord] = []

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
    ) -> AuditRecord:
        entry = AuditRecord(
            len(self._records) + 1, time, user, action, target, old, new, reason, accepted, result
        )
        self._records.append(entry)
        return entry

    def since(self, seq: int) -> list[AuditRecord]:
        """Records with a sequence number above `seq`."""
        return self._records[seq:]

    def __iter__(self) -> Iterator[AuditRecord]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)
