"""RunningOutput: delivery from a spool to a dumb sink, modelled on Telegraf's RunningOutput.

The sink writes one batch or says why not (`RetryableError`, `RejectedError`); this runner owns
the rest: batches of at most `batch_size` items, written as soon as a full batch is waiting or
once the oldest waiting item has waited `flush_interval_s` (plus random jitter), capped
exponential backoff on retryable errors
(the same batch again, so order is kept), dead-lettering of batches the server rejects, and
counters of what was written, retried and rejected. Items leave the spool only once written
(or dead-lettered): a crash at any point replays them, and the sink's writes are idempotent.

The interval is counted from an item's arrival, not from a free-running clock (Telegraf's
flush_interval ticks on its own, so an item waits anywhere from 0 to a whole interval): the
interval bounds how long any item waits, whatever its phase. Under load it batches by itself:
what arrives while one write is under way goes out in the next.

With `write_on_notify` (the historian's default, `flush_on_burst`), `notify` means "a burst is
complete": the items are written at once instead of waiting for the interval. The historian's
ingest notifies once per commit, which it makes when the broker has nothing more to send for
now, so a write follows each burst; the interval is then only the bound for items added without
`notify` (the self-metrics). Under load nothing changes: what arrives during a write is
written, all of it, right after. Measured in issue 17 (bench.pipeline, docs/scaling.md).

The second difference: a rejected batch is not dropped whole (Telegraf's InfluxDB v2 output
drops a batch on 400). InfluxDB 2.x refuses a whole request when one line does not parse, so
one bad point would take thousands of good ones from other sites with it. A batch the sink
rejects `per_item` is split in halves, each delivered on its own, down to the single items the
server refuses: only those are dead-lettered (`splits` counts the halvings). One bad item in a
batch of n costs about 2 log2(n) writes; good halves are written once. Writes are idempotent,
so a half InfluxDB 1.x had already written before its "partial write" answer does no harm.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence

from bridge.counters import Counters
from bridge.sink import RejectedError, RetryableError, Sink
from bridge.spool import Spool
from core.backoff import Backoff, half_jitter

IDLE_POLL_S = 0.1  # how often an idle runner looks at the spool (items added without notify)


class _Stopped:
    """Stop came before the write succeeded."""


_STOPPED = _Stopped()


class RunningOutput:
    """Drains a spool into a sink until stopped.

    Args:
        spool: Where the items wait.
        sink: Writes a batch.
        on_rejected: Called with a batch the sink rejected and the reason (dead letter).
        batch_size: Items per write.
        flush_interval_s: A partial batch is written once its oldest item has waited this long
            (items reported by `notify`; others are found within IDLE_POLL_S).
        flush_jitter_s: Each interval is longer by a random 0..jitter, so that many instances
            do not write in step.
        retry_initial_s: First backoff after a retryable error; doubled per failure ...
        retry_max_s: ... up to this.
        timestamp: Reads an item's timestamp in ns, for the `lag_ms` gauge (None: no gauge).
        write_on_notify: `notify` means a burst is complete: write what waits at once.
    """

    def __init__(
        self,
        spool: Spool,
        sink: Sink,
        on_rejected: Callable[[Sequence[bytes], str], None],
        *,
        batch_size: int = 5000,
        flush_interval_s: float = 1.0,
        flush_jitter_s: float = 0.0,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        counters: Counters | None = None,
        timestamp: Callable[[bytes], int] | None = None,
        name: str = "output",
        write_on_notify: bool = False,
    ) -> None:
        self.spool = spool
        self.sink = sink
        self.counters = counters or Counters()
        self._on_rejected = on_rejected
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._jitter = flush_jitter_s
        self._retry_initial = retry_initial_s
        self._retry_max = retry_max_s
        self._timestamp = timestamp
        self._wake = threading.Event()
        self._write_on_notify = write_on_notify
        self._burst = threading.Event()  # a burst is complete (notify, with write_on_notify)
        self._healthy = True
        self._log = logging.getLogger(f"bridge.{name}")

    def notify(self) -> None:
        """Tell the runner items were added (any thread): their wait starts now, or, with
        `write_on_notify`, they are written at once."""
        if self._write_on_notify:
            self._burst.set()
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Write full batches at once and partial ones when their oldest item is due."""
        since: float | None = None  # the oldest waiting item arrived no earlier than this
        while not stop.is_set():
            self._wake.clear()
            if self.spool.depth == 0:
                # Idle: wait for news. Items added without `notify` are found by polling.
                self._wake.wait(IDLE_POLL_S)
                since = None
                continue
            if since is None:
                since = time.monotonic()
            deadline = since + self._interval + random.uniform(0, self._jitter)
            # Wait for the deadline, a full batch, or stop.
            while not stop.is_set() and self.spool.depth < self._batch_size:
                if self._burst.is_set():
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.clear()
                self._wake.wait(min(left, IDLE_POLL_S))
            # What arrives from now on waits for the next write: its wait starts here at the
            # earliest, so counting from here never makes it wait longer than the interval.
            self._burst.clear()  # a burst notified from now on asks for the next write
            since = self.drain(stop)

    def drain(self, stop: threading.Event) -> float | None:
        """Write batches until the spool is empty (a partial batch included) or `stop`.

        Returns when the last batch was taken (items still waiting arrived after it), or None
        if the spool was found empty.
        """
        taken: float | None = None
        while not stop.is_set():
            taken = time.monotonic()
            rows = self.spool.peek(self._batch_size)
            if not rows:
                return None
            if not self._deliver(rows, stop):
                return taken
            if len(rows) < self._batch_size:
                return taken
        return taken

    def _deliver(self, rows: list[tuple[int, bytes]], stop: threading.Event) -> bool:
        """Deliver one batch: written, or split until only refused items are dead-lettered.

        Returns False if `stop` came first (what was not delivered stays in the spool).
        """
        parts, refused, reason = [rows], 0, ""
        while parts:
            part = parts.pop()
            outcome = self._write(part, stop)
            if isinstance(outcome, _Stopped):
                return False
            if outcome is None:
                continue
            if outcome.per_item and len(part) > 1:
                half = len(part) // 2
                parts += [part[half:], part[:half]]  # the first half next: order is kept
                self.counters.add("splits")
                continue
            lines = [data for _, data in part]
            refused, reason = refused + len(lines), reason or str(outcome)
            self.counters.add("rejected", len(lines))
            self.counters.add("dead_letters")
            # Durable first: the callback returns once the dead letter is on disk.
            self._on_rejected(lines, str(outcome))
            self.spool.ack([row_id for row_id, _ in part])
        if refused:
            self._log.warning(
                "%d of a batch of %d items rejected and dead-lettered: %s",
                refused,
                len(rows),
                reason,
            )
        return True

    def _write(
        self, rows: list[tuple[int, bytes]], stop: threading.Event
    ) -> RejectedError | _Stopped | None:
        """Write rows, retrying retryable errors; None when written (and acked)."""
        ids = [row_id for row_id, _ in rows]
        lines = [data for _, data in rows]
        backoff = Backoff(self._retry_initial, self._retry_max)
        while True:
            try:
                self.sink.write(lines)
            except RetryableError as error:
                self.counters.add("retries")
                self._unhealthy(str(error))
                step = backoff.next()
                delay = step if error.retry_after is None else min(error.retry_after, 300)
                # Jitter on the backoff: historians that lost the same server do not all
                # come back in the same instant.
                if stop.wait(half_jitter(delay, random.uniform)):
                    return _STOPPED
                continue
            except RejectedError as error:
                self._recovered()
                return error
            self.spool.ack(ids)
            self.counters.add("written", len(lines))
            if self._timestamp is not None:
                newest = max(self._timestamp(line) for line in lines)
                self.counters.set("lag_ms", max(0.0, (time.time_ns() - newest) / 1e6))
            self._recovered()
            return None

    def _unhealthy(self, reason: str) -> None:
        if self._healthy:
            self._healthy = False
            self._log.warning("write failed, retrying with backoff: %s", reason)

    def _recovered(self) -> None:
        if not self._healthy:
            self._healthy = True
            self._log.info("writes succeed again")
