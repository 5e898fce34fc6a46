"""What a sink is: it writes one batch or says how it failed. Nothing more.

Like a Telegraf output plugin a sink keeps no buffer and does not retry: `RunningOutput`
(runner.py) owns batching, retry and counting. A failure is a `RetryableError` (connection
refused, timeout, 429, 5xx: try the same batch again later, honouring Retry-After) or a
`RejectedError` (400, 413, 422, or another 4xx: the batch will never be accepted as it is; the
runner splits it to find the items at fault).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class SinkError(Exception):
    """A batch was not written."""


class RetryableError(SinkError):
    """The batch may succeed later; `retry_after` is the server's hint in seconds, if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RejectedError(SinkError):
    """The server refused the batch; retrying it as it is cannot help.

    `per_item` (the default) says the refusal is about some items of the batch (a bad line, a
    body too large): the runner splits the batch to find them and writes the rest. False says
    it is about the request itself, which no split can change: the batch is dead-lettered.
    """

    def __init__(self, message: str, *, per_item: bool = True) -> None:
        super().__init__(message)
        self.per_item = per_item


class Sink(Protocol):
    """What `RunningOutput` needs of an output."""

    def write(self, lines: Sequence[bytes]) -> None: ...

    def close(self) -> None: ...
