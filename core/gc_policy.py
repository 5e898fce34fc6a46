"""The garbage collector's settings for a long-running service process (server, edge, historian).

    gc_policy.for_service()        # first thing in the process's entry point
    ... build what lives as long as the process (the address space, the subscription) ...
    gc_policy.freeze_startup()     # once, when start-up is done

Why (issue 17, `python -m bench.opcua --tags 20000 --rate 1`, measured with a gc.callbacks
probe in the server process, 2 cores, load about 2):
- CPython's default thresholds (700, 10, 10) promote every object that lives longer than about
  7,000 allocations to the oldest generation. A published value lives about a second (until the
  next one replaces it), so at 20,000 samples a second every value was promoted, and the
  oldest generation, which holds the address space and the monitored items (320,000 tracked
  objects at 20,000 tags, 2 million with the server's start-up objects), was scanned whole
  every second or two: 12.7 s of collection in a 40 s run, pauses up to 1.85 s. A pause that
  long makes the server skip a whole second of 1 Hz samples (it made up no late tick then).
- `freeze_startup` moves what start-up built to the permanent generation, which collections
  never scan; the objects still die by reference counting (only cycles among them would stay).
- A middle threshold of 1,000 collects the middle generation every 700,000 allocations (about
  5 s at 20,000 samples a second): a value replaced within that is freed by reference counting
  before it could be promoted, so the oldest generation stops growing with the data rate.
Together, same benchmark, back to back: collection time over 20 s of steady state 6.0 s ->
1.3 s, 13 -> 0 full collections, server CPU 58 % -> 47 % of a core, ticks 3.0 -> 4.9 a second.

Applied only in processes that run one service: a test process that starts and stops servers
in-process keeps the defaults (frozen garbage cycles of stopped servers would never be freed).
"""

from __future__ import annotations

import gc

#: (first, middle, oldest) generation thresholds; see the module docstring for the middle one.
SERVICE_THRESHOLDS = (700, 1000, 10)


def for_service() -> None:
    """Set the service thresholds: short-lived data no longer reaches the oldest generation."""
    gc.set_threshold(*SERVICE_THRESHOLDS)


def freeze_startup() -> None:
    """Collect once, then keep everything alive now out of every later collection."""
    gc.collect()
    gc.freeze()
