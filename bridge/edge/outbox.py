"""The durable outbox: every MQTT message the edge sends is committed here first.

As in Telegraf's RunningOutput, producers never publish: they append messages to the outbox
(`bridge.spool`, SQLite, one transaction per batch), and one publisher drains it in order and
deletes a row only when the broker has acknowledged it (PUBACK). A SIGKILL at any point loses
nothing committed; a row published but not yet acknowledged is published again after a restart
(at least once: the historian's writes are idempotent).

A row is a one-line JSON header (topic, retain flag, MQTT 5 correlation data) and the payload.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from bridge.spool import Spool


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message waiting in the outbox."""

    topic: str
    payload: bytes
    retain: bool = False
    correlation: bytes | None = None  # MQTT 5 CorrelationData of a command reply

    def encode(self) -> bytes:
        header: dict[str, object] = {"t": self.topic}
        if self.retain:
            header["r"] = 1
        if self.correlation is not None:
            header["c"] = base64.b64encode(self.correlation).decode()
        return json.dumps(header, separators=(",", ":")).encode() + b"\n" + self.payload

    @classmethod
    def decode(cls, row: bytes) -> Message:
        """A row as written by `encode`; ValueError (or another error) when it is not one."""
        head, _, payload = row.partition(b"\n")
        header = json.loads(head)
        topic, correlation = header["t"], header.get("c")
        if not isinstance(topic, str) or not isinstance(correlation, str | None):
            raise ValueError("outbox row header has the wrong types")
        return cls(
            topic,
            payload,
            bool(header.get("r")),
            None if correlation is None else base64.b64decode(correlation, validate=True),
        )


class Outbox:
    """Messages in, in order, durably; a thin typed face over `Spool`."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    def put(self, messages: list[Message]) -> None:
        """Commit messages (one transaction); when this returns, they survive a crash."""
        self.spool.put_many(m.encode() for m in messages)

    def peek(self, n: int) -> list[tuple[int, Message]]:
        return [(row_id, Message.decode(data)) for row_id, data in self.peek_rows(n)]

    def peek_rows(self, n: int) -> list[tuple[int, bytes]]:
        """The oldest `n` rows undecoded: the publisher decodes each on its own, so that one
        row it cannot read is set aside (`bridge.edge.deadletters`) instead of stopping it."""
        return self.spool.peek(n)

    def ack(self, ids: list[int]) -> None:
        self.spool.ack(ids)

    @property
    def depth(self) -> int:
        return self.spool.depth

    @property
    def dropped(self) -> int:
        return self.spool.dropped
