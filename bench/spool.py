"""Benchmark of bridge.spool: put + peek + ack of small items in batches.

Scenario: 200,000 items of 120 bytes (about one InfluxDB line) go through the spool in batches
of 500 (put_many, then peek and ack of 500), as the historian moves them, with
synchronous=FULL and NORMAL. The baseline, in the same run, is plain sqlite3 `executemany`
inserts of the same items in the same batches into a WAL table with the same synchronous
setting and no reads or deletes; `ratio` is spool items/s over baseline items/s.

    python -m bench.spool          # last line: one JSON object
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from bridge.spool import Spool, Synchronous

ITEMS = 200_000  # items per run
BATCH = 500  # items per put_many / peek / ack
SIZE = 120  # bytes per item


def _items() -> list[bytes]:
    pad = b"x" * SIZE
    return [(b"%08d" % i + pad)[:SIZE] for i in range(ITEMS)]


def spool_rate(folder: Path, items: list[bytes], synchronous: Synchronous) -> float:
    """Items per second through put_many + peek + ack."""
    with Spool(folder / f"spool-{synchronous}.db", synchronous=synchronous) as spool:
        start = time.perf_counter()
        for i in range(0, len(items), BATCH):
            spool.put_many(items[i : i + BATCH])
            rows = spool.peek(BATCH)
            spool.ack([row_id for row_id, _ in rows])
        elapsed = time.perf_counter() - start
        assert spool.depth == 0
    return len(items) / elapsed


def baseline_rate(folder: Path, items: list[bytes], synchronous: Synchronous) -> float:
    """Items per second of plain batched inserts, one transaction per batch."""
    db = sqlite3.connect(folder / f"plain-{synchronous}.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    start = time.perf_counter()
    for i in range(0, len(items), BATCH):
        db.execute("BEGIN")
        db.executemany("INSERT INTO t (data) VALUES (?)", ((b,) for b in items[i : i + BATCH]))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return len(items) / elapsed


def main() -> None:
    items = _items()
    result: dict[str, object] = {
        "bench": "spool",
        "items": ITEMS,
        "batch": BATCH,
        "item_bytes": SIZE,
        "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        for sync in ("FULL", "NORMAL"):
            rate = spool_rate(Path(tmp), items, sync)
            base = baseline_rate(Path(tmp), items, sync)
            key = sync.lower()
            result[f"items_per_s_{key}"] = round(rate)
            result[f"baseline_insert_per_s_{key}"] = round(base)
            result[f"ratio_{key}"] = round(rate / base, 3)
            print(f"{sync}: spool {rate:,.0f} items/s, plain insert {base:,.0f}/s", file=sys.stderr)
    # The headline figure is the default, durable setting.
    result["items_per_s"] = result["items_per_s_full"]
    result["ratio"] = result["ratio_full"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
