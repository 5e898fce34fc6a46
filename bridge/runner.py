"""RunningOutput: delivery from a spool to a dumb sink, modelled on Telegraf's RunningOutput.

The sink writes one batch or says why not (`RetryableError`, `RejectedError`); this runner owns
the rest: batches of at most `batch_size` items, a flush every `flush_interval_s` plus random
jitter (or as soon as a full batch is waiting), capped exponential backoff on retryable errors
(the same batch again, so order is kept), dead-lettering of batches the server rejects, and
counters of what was written, retried and rejected. Items leave the spool only once written
(or dead-lettered): a crash at any point replays them, and the sink's writes are idempotent.
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


class RunningOutput:
    """Drains a spool into a sink until stopped.

    Args:
        spool: Where the items wait.
        sink: Writes a batch.
        on_rejected: Called with a batch the sink rejected and the reason (dead letter).
        batch_size: Items per write.
        flush_interval_s: A partial batch is written at least this often.
        flush_jitter_s: Each interval is longer by a random 0..jitter, so that many instances
            do not write in step.
        retry_initial_s: First backoff after a retryable error; doubled per failure ...
        retry_max_s: ... up to this.
        timestamp: Reads an item's timestamp in ns, for the `lag_ms` gauge (None: no gauge).
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
        self._healthy = True
        self._log = logging.getLogger(f"bridge.{name}")

    def notify(self) -> None:
        """Tell the runner items were added; it writes early when a full batch waits."""
        if self.spool.depth >= self._batch_size:
            self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Flush on every interval (or full batch) until `stop` is set."""
        while not stop.is_set():
            self.drain(stop)
            self._wake.clear()
            if self.spool.depth >= self._batch_size:
                continue
            wait = self._interval + random.uniform(0, self._jitter)
            deadline = time.monotonic() + wait
            # Wake for a full batch, for stop, or at the interval.
            while not stop.is_set() and not self._wake.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.wait(min(left, 0.1))

    def drain(self, stop: threading.Event) -> None:
        """Write batches until the spool is empty (a partial batch included) or `stop`."""
        while not stop.is_set():
            rows = self.spool.peek(self._batch_size)
            if not rows:
                return
            if not self._deliver(rows, stop):
                return
            if len(rows) < self._batch_size:
                return

    def _deliver(self, rows: list[tuple[int, bytes]], stop: threading.Event) -> bool:
        """Write one batch, retrying until written, rejected or stopped."""
        ids = [row_id for row_id, _ in rows]
        lines = [data for _, data in rows]
        backoff = self._retry_initial
        while True:
            try:
                self.sink.write(lines)
            except RetryableError as error:
                self.counters.add("retries")
                self._unhealthy(str(error))
                delay = backoff if error.retry_after is None else min(error.retry_after, 300)
                # Full jitter on the backoff: historians that lost the same server do not
                # all come back in the same instant.
                if stop.wait(random.uniform(delay / 2, delay)):
                    return False
                backoff = min(backoff * 2, self._retry_max)
                continue
            except RejectedError as error:
                self._log.warning("batch of %d items rejected: %s", len(lines), error)
                self.counters.add("rejected", len(lines))
                self.counters.add("dead_letters")
                self._on_rejected(lines, str(error))
                self.spool.ack(ids)
                self._recovered()
                return True
            self.spool.ack(ids)
            self.counters.add("written", len(lines))
            if self._timestamp is not None:
                newest = max(self._timestamp(line) for line in lines)
                self.counters.set("lag_ms", max(0.0, (time.time_ns() - newest) / 1e6))
            self._recovered()
            return True

    def _unhealthy(self, reason: str) -> None:
        if self._healthy:
            self._healthy = False
            self._log.warning("write failed, retrying with backoff: %s", reason)

    def _recovered(self) -> None:
        if not self._healthy:
            self._healthy = True
            self._log.info("writes succeed again")
