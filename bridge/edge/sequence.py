"""Sequence numbers that only ever grow, across restarts and SIGKILL, at almost no I/O cost.

A counter reserves numbers in blocks: before it hands out a number at or above its reserved
limit, it writes a new limit (current + block) to disk, fsynced and atomically renamed into
place. After a crash it restarts from the stored limit, so a number is never handed out twice;
the unused rest of a block is skipped (a gap, which "strictly increasing" allows). One write
per `block` numbers keeps this off the hot path.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path


class SequenceError(RuntimeError):
    """The sequence file cannot be read or written."""


class Sequences:
    """Named persistent counters in one small JSON file.

    Args:
        path: the file (created if missing).
        block: numbers reserved per disk write.
    """

    def __init__(self, path: str | Path, block: int = 100_000) -> None:
        self.path = Path(path)
        self.block = block
        self._lock = threading.Lock()
        try:
            self._limits: dict[str, int] = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self._limits = {}
        except (OSError, ValueError) as error:
            raise SequenceError(f"cannot read sequence file {self.path}: {error}") from None
        # Start every counter at its stored limit: numbers below it may have been used.
        self._next = dict(self._limits)

    def take(self, name: str, count: int = 1) -> int:
        """Reserve `count` consecutive numbers of counter `name`; returns the first."""
        with self._lock:
            first = self._next.get(name, 1)
            end = first + count
            if end > self._limits.get(name, 0):
                self._limits[name] = end + self.block
                self._store()
            self._next[name] = end
            return first

    def _store(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as file:
                json.dump(self._limits, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self.path)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)  # the rename itself must survive a power loss
            finally:
                os.close(directory)
        except OSError as error:
            raise SequenceError(f"cannot write sequence file {self.path}: {error}") from None
