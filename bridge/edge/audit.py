"""The twin's audit trail through the edge: every record forwarded once, the gaps read back.

The twin's audit records reach the edge live as `PlantAuditEventType` OPC UA events, each with
its own sequence number (`AuditSeq`, 1, 2, 3, ... per audit log). OPC UA events are not
historized, so a record emitted while the edge was not subscribed (before it first connected,
while it was down or reconnecting) never arrives as an event. After every (re)connection,
once the event subscription is live, the edge asks the server for the records after the
highest one it has forwarded (the site's `AuditSince` method, paged) and forwards those it has
not, in order, with their own sequence numbers and times.

`AuditMark` is what has been forwarded: the highest sequence number below which every record
is in the outbox (`high`), the few above it forwarded out of order (`above`), and which audit
log they count in (`log_id`: a restarted server has a new twin, whose records start at 1
again). It is persisted after the outbox commit that justifies it, so a crash in between sends
a record again, with the same sequence number and time: the historian stores the same point
(exactly once in InfluxDB, at least once on MQTT, as every outbox row).

While a backfill runs, live audit events are parked and forwarded after it, in sequence order,
those the backfill has not forwarded already; a record is never forwarded twice by seq.

The server keeps only its newest records (`twin.audit.MAX_RECORDS`, hours of them). When the
first record a backfill gets is above the one after the mark, the records between are gone
from the server for good: the edge says how many (a warning), counts them as given up, and
forwards the rest. A mark never grows without bound either: more than `MAX_ABOVE` records
forwarded above a gap give up that gap.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from asyncua import Client, ua

AUDIT_SINCE = "AuditSince"
PAGE = 500  # records asked for per call (the server caps it too)
MAX_ABOVE = 10_000  # records forwarded above a gap the mark remembers before it gives the gap up
#: The server has no AuditSince (an older server): live events only, gaps stay gaps.
UNSUPPORTED = frozenset({ua.StatusCodes.BadNodeIdUnknown, ua.StatusCodes.BadMethodInvalid})

#: Forwards audit records (event fields, in order) and commits them to the outbox.
Forward = Callable[[list[dict[str, Any]]], Awaitable[None]]

_log = logging.getLogger("bridge.edge.audit")


def mark_path(spool_path: Path, what: str = "audit") -> Path:
    """Where a mark lives: beside the outbox (`what`: audit, or alarms for the transitions)."""
    return spool_path.with_name(f"{spool_path.name}.{what}.json")


@dataclass
class AuditMark:
    """Which records of which audit log have been forwarded (see the module docstring)."""

    log_id: str = ""
    high: int = 0
    above: set[int] = field(default_factory=set)

    def take(self, seq: int) -> bool:
        """Mark `seq` forwarded; False when it already was (a duplicate, not to forward)."""
        if seq <= self.high or seq in self.above:
            return False
        self.above.add(seq)
        while self.high + 1 in self.above:
            self.high += 1
            self.above.discard(self.high)
        if len(self.above) > MAX_ABOVE:
            missing = self.accept_gaps()
            _log.warning("%d audit records never arrived; given up", missing)
        return True

    def give_up_below(self, seq: int) -> int:
        """Count every record below `seq` as done (they no longer exist); returns how many
        had not been forwarded."""
        if seq <= self.high + 1:
            return 0
        missing = seq - 1 - self.high - sum(1 for s in self.above if s < seq)
        self.above = {s for s in self.above if s >= seq}
        self.high = seq - 1
        while self.high + 1 in self.above:
            self.high += 1
            self.above.discard(self.high)
        return missing

    def accept_gaps(self) -> int:
        """Give up on the records missing below the highest forwarded; returns how many."""
        if not self.above:
            return 0
        top = max(self.above)
        missing = top - self.high - len(self.above)
        self.high, self.above = top, set()
        return missing

    def to_json(self) -> str:
        return json.dumps({"log_id": self.log_id, "high": self.high, "above": sorted(self.above)})

    @classmethod
    def from_json(cls, text: str) -> AuditMark:
        data = json.loads(text)
        return cls(str(data["log_id"]), int(data["high"]), {int(s) for s in data["above"]})


def parse_record(text: str) -> dict[str, Any]:
    """One record of `AuditSince` as the fields of its live event (Time as a datetime)."""
    fields: dict[str, Any] = json.loads(text)
    fields["Time"] = datetime.fromisoformat(fields["Time"])
    return fields


class AuditTrail:
    """Dedupes and backfills the audit records the edge forwards; persists its mark.

    The same works for any numbered sequence of records the server reads back by a paged
    `<Name>Since(AfterSeq, MaxRecords)` method: the alarm transitions
    (`Alarms.TransitionsSince`, numbered by `AlarmSeq`).

    Args:
        path: the mark's file (`mark_path`: beside the outbox).
        forward: puts records in the outbox and commits them (then `changes` may be written).
        method: the reader's NodeId after `<site>.`.
        seq_field: the field that numbers the records.
        what: what the records are, for the log.
    """

    def __init__(
        self,
        path: str | Path,
        forward: Forward,
        *,
        method: str = AUDIT_SINCE,
        seq_field: str = "AuditSeq",
        what: str = "audit records",
    ) -> None:
        self.path = Path(path)
        self._forward = forward
        self._method = method
        self._seq_field = seq_field
        self._what = what
        try:
            self.mark = AuditMark.from_json(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.mark = AuditMark()
        except (OSError, ValueError, KeyError, TypeError) as error:
            # Unreadable: start from the first record; the historian's writes are idempotent.
            _log.warning("audit mark %s unreadable (%s): forwarding from seq 1", self.path, error)
            self.mark = AuditMark()
        self._parked: dict[int, dict[str, Any]] | None = None  # live records during a backfill
        self._version = 0  # of the mark, to persist it once per change
        self._written = 0

    # live events -----------------------------------------------------------------------------

    def connecting(self) -> None:
        """A new connection: park live records until `backfill` has run on it."""
        self._parked = {}

    def live(self, fields: dict[str, Any]) -> list[dict[str, Any]]:
        """A live audit event: the records to forward now (none when parked or seen)."""
        seq = int(fields.get(self._seq_field) or 0)
        if self._parked is not None:
            self._parked.setdefault(seq, fields)
            return []
        return [fields] if self._take(seq) else []

    def _take(self, seq: int) -> bool:
        if self.mark.take(seq):
            self._version += 1
            return True
        return False

    # the backfill ----------------------------------------------------------------------------

    async def backfill(self, client: Client, namespace: int, site: str) -> int:
        """Forward the records after the mark, page by page, then the parked live ones.

        Returns how many were backfilled. A lost connection raises (the parked records are
        dropped: the server still has them, and the next backfill reads them).
        """
        parent = ua.NodeId(site, namespace)
        method = ua.NodeId(f"{site}.{self._method}", namespace)
        after, added, unsupported = self.mark.high, 0, False
        try:
            while True:
                answer = await self._call(client, parent, method, after)
                if not isinstance(answer, tuple):
                    unsupported = answer in UNSUPPORTED
                    break
                texts, last_seq, log_id = answer
                if log_id != self.mark.log_id:
                    if self.mark.log_id:
                        _log.info("a new log of %s on the server: from seq 1", self._what)
                    self.mark = AuditMark(log_id)
                    self._version += 1
                    if after != 0:
                        after = 0
                        continue
                records = [parse_record(text) for text in texts]
                if records and int(records[0][self._seq_field]) > after + 1:
                    gone = self.mark.give_up_below(int(records[0][self._seq_field]))
                    if gone:
                        self._version += 1
                        _log.warning(
                            "%d %s after seq %d are no longer kept by the server "
                            "and were never forwarded: given up",
                            gone,
                            self._what,
                            after,
                        )
                fresh = [r for r in records if self._take(int(r[self._seq_field]))]
                if fresh:
                    await self._forward(fresh)
                    added += len(fresh)
                if not records or int(records[-1][self._seq_field]) >= last_seq:
                    break
                after = int(records[-1][self._seq_field])
            parked, self._parked = self._parked or {}, None
            fresh = [parked[seq] for seq in sorted(parked) if self._take(seq)]
            if unsupported and (gaps := self.mark.accept_gaps()):
                self._version += 1
                _log.warning("%d %s missed while not subscribed, given up", gaps, self._what)
            if fresh:
                await self._forward(fresh)
        except BaseException:
            self._parked = None
            raise
        if added:
            _log.info("backfilled %d %s (up to seq %d)", added, self._what, self.mark.high)
        return added

    async def _call(
        self, client: Client, parent: ua.NodeId, method: ua.NodeId, after: int
    ) -> tuple[list[str], int, str] | int:
        """One page, or the status code when the server cannot answer (then live events only)."""
        request = ua.CallMethodRequest()
        request.ObjectId = parent
        request.MethodId = method
        request.InputArguments = [
            ua.Variant(after, ua.VariantType.UInt64),
            ua.Variant(PAGE, ua.VariantType.UInt32),
        ]
        result = (await client.uaclient.call([request]))[0]
        status = result.StatusCode
        if not status.is_good():
            _log.warning(
                "%s: %s; %s missed while not subscribed are not backfilled",
                self._method,
                status.name,
                self._what,
            )
            return int(status.value)
        texts, last_seq, log_id = (arg.Value for arg in result.OutputArguments)
        return list(texts or []), int(last_seq), str(log_id)

    # persistence -----------------------------------------------------------------------------

    def changes(self) -> tuple[int, str] | None:
        """The mark to `write` once what was forwarded so far is committed; None if unchanged."""
        if self._version == self._written:
            return None
        return self._version, self.mark.to_json()

    def write(self, change: tuple[int, str]) -> None:
        """Store a mark from `changes` atomically (on any thread)."""
        version, text = change
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self.path)
        self._written = max(self._written, version)
