"""The edge's notification consumer hands the event loop back during a long burst."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from bridge.edge.opcua import YIELD_EVERY, OpcUaSource


class _Burst:
    """An asyncua subscription in iterator mode whose queue is never empty: no `async for`
    step suspends, as when a large publish response has just been queued."""

    def __init__(self, count: int, log: list[str]) -> None:
        self.count = count
        self.log = log

    async def __aiter__(self) -> AsyncIterator[object]:
        for _ in range(self.count):
            yield object()  # neither a data change nor an event: the consumer skips it
        self.log.append("consumer done")


def test_a_burst_of_notifications_lets_other_tasks_run_before_it_is_taken_in() -> None:
    log: list[str] = []
    fake: Any = SimpleNamespace(
        _tags={}, _batcher=SimpleNamespace(add=None), _seen={}, _counters=None
    )

    async def probe() -> None:
        log.append("probe answered")  # stands for the health probe's reply being read

    async def main() -> None:
        consumer = asyncio.create_task(OpcUaSource._consume(fake, _Burst(5 * YIELD_EVERY, log)))
        await asyncio.sleep(0)  # the consumer starts its burst
        await asyncio.create_task(probe())
        await consumer

    asyncio.run(main())
    assert log == ["probe answered", "consumer done"]
