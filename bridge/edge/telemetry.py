"""Samples -> per-module TelemetryBatch messages in the outbox, with sequence numbers.

The OPC UA side `add`s samples as they arrive; `flush` groups the waiting samples by module, in
arrival order, numbers them from the persistent per-site sample counter, and commits one message
per module in one outbox transaction. A flush follows each burst of notifications (see
`arrived`), or `batch_interval_s` at the latest. Ground-truth tags (the
Simulation folder) go to `SiteTopics.truth(module)`, the others to `telemetry(module)`.

After each commit the per-tag watermark advances: the source time up to which every sample of
the tag is in the outbox. It is what a restarted edge backfills from, so it is persisted
(`Watermarks.save`) only after the commit that justifies it, and it does not advance over a
tag's gap while that gap is being backfilled.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from bridge.counters import Counters
from bridge.edge.outbox import Message, Outbox
from bridge.edge.sequence import Sequences
from core.payload import Sample, Scalar, TelemetryBatch, encode_batch
from core.topics import SiteTopics

SAMPLE_COUNTER = "sample"


@dataclass(frozen=True, slots=True)
class TagInfo:
    """A subscribed tag: its registry id, its module, and whether it is ground truth."""

    tag: str
    module: str
    truth: bool


@dataclass(frozen=True, slots=True)
class RawSample:
    """A sample before it is numbered."""

    info: TagInfo
    value: Scalar
    quality: str
    source_ns: int
    server_ns: int


class Watermarks:
    """Per tag, the source time (ns) up to which every sample is in the outbox; persistent."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.values: dict[str, int] = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.values = {}
        except (OSError, ValueError):
            self.values = {}  # unreadable: start without backfill rather than not at all
        self._dirty = False

    def advance(self, tag: str, ns: int) -> None:
        if ns > self.values.get(tag, -1):
            self.values[tag] = ns
            self._dirty = True

    def changes(self) -> dict[str, int] | None:
        """A copy to `write` (on any thread) if they moved since the last call, else None."""
        if not self._dirty:
            return None
        self._dirty = False
        return dict(self.values)

    def write(self, values: dict[str, int]) -> None:
        """Store a copy from `changes`, atomically (a crash leaves the old or the new file)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as file:
            json.dump(values, file, separators=(",", ":"))
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self.path)


class Batcher:
    """Collects samples and commits them to the outbox as module batches."""

    def __init__(
        self,
        site: str,
        outbox: Outbox,
        sequences: Sequences,
        watermarks: Watermarks,
        counters: Counters,
    ) -> None:
        self._site = site
        self._topics = SiteTopics(site)
        self._outbox = outbox
        self._sequences = sequences
        self._watermarks = watermarks
        self._counters = counters
        self._pending: list[RawSample] = []
        #: Set by `add`. The consumer takes an OPC UA publish response in without yielding to
        #: the event loop (up to `opcua.YIELD_EVERY` notifications), so a flusher waiting on
        #: this runs once the response is complete: a flush per response, or per
        #: YIELD_EVERY notifications of a larger one.
        self.arrived = asyncio.Event()
        #: Tags whose gap is being backfilled: their watermark must not pass the gap yet.
        self.holding: set[str] = set()
        self._newest: dict[str, int] = {}  # newest source time committed, per tag

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, sample: RawSample) -> None:
        self._pending.append(sample)
        self.arrived.set()

    def take(self) -> tuple[list[Message], list[RawSample]]:
        """Number and encode the waiting samples (on the event loop, so numbering is ordered)."""
        samples, self._pending = self._pending, []
        if not samples:
            return [], []
        first = self._sequences.take(SAMPLE_COUNTER, len(samples))
        groups: dict[tuple[str, bool], list[Sample]] = {}
        for i, raw in enumerate(samples):
            info = raw.info
            groups.setdefault((info.module, info.truth), []).append(
                Sample(
                    tag=info.tag,
                    value=raw.value,
                    quality=raw.quality,
                    source_ns=raw.source_ns,
                    server_ns=raw.server_ns,
                    seq=first + i,
                )
            )
        now = time.time_ns()
        messages = []
        for (module, truth), group in groups.items():
            topic = self._topics.truth(module) if truth else self._topics.telemetry(module)
            batch = TelemetryBatch(self._site, module, now, tuple(group))
            messages.append(Message(topic, encode_batch(batch)))
        return messages, samples

    def committed(self, samples: list[RawSample]) -> None:
        """Advance the watermarks of samples now durable in the outbox."""
        holding, newest = self.holding, self._newest
        if samples:
            newest_server = max(raw.server_ns for raw in samples)
            self._counters.set("lag_ms", max(0.0, (time.time_ns() - newest_server) / 1e6))
        for raw in samples:
            tag = raw.info.tag
            if raw.source_ns > newest.get(tag, -1):
                newest[tag] = raw.source_ns
            if tag not in holding:
                self._watermarks.advance(tag, raw.source_ns)
        self._counters.add("samples_out", len(samples))

    def release(self, tags: set[str]) -> None:
        """The gaps of `tags` are backfilled and committed: their watermarks may move on."""
        self.holding -= tags
        for tag in tags:
            if tag in self._newest:
                self._watermarks.advance(tag, self._newest[tag])
